"""The ACL model (library/acl.py) and its options: ids checked, the path's and nodes' ACLs,
the start-time delete check, flags/environment/TOML ``[acl]``."""

from __future__ import annotations

import hashlib
from base64 import b64encode
from pathlib import Path

import pytest

from election_daemon.cli.run import load_daemon_config
from election_daemon.errors import ConfigError
from election_daemon.library.acl import (
    ALL,
    CREATE,
    DELETE,
    READ,
    WRITE,
    AclEntry,
    ElectionACL,
    can_delete_children,
    check_acl,
    describe,
    node_acl,
    open_rights,
    path_acl,
    perms_text,
)
from election_daemon.library.security import DigestAuth

ALICE = "digest:alice:" + b64encode(hashlib.sha1(b"alice:pw").digest()).decode()
BOB = "digest:bob:abc="
OSCAR = "digest:oscar:def="
X509 = "x509:CN=reader,O=Example, Inc."


def test_a_digest_id_is_zookeepers() -> None:
    assert DigestAuth("alice", "pw").acl_id() == ALICE


def test_ids_are_checked_and_world_is_for_readers_only() -> None:
    acl = check_acl(ElectionACL((ALICE, ALICE, BOB), (OSCAR,), ("world:anyone", X509)))
    assert acl == ElectionACL((ALICE, BOB), (OSCAR,), ("world:anyone", X509))
    assert check_acl(None) is None
    bad = {
        "not an id": ElectionACL(("alice",)),
        "unknown scheme": ElectionACL(("auth:alice",)),
        "may only be a reader": ElectionACL((), ("world:anyone",)),
        "one id, world:anyone": ElectionACL((), (), ("world:nobody",)),
        "digest:user:<base64 sha1>": ElectionACL(("digest:alice",)),
        "list of ids": ElectionACL("digest:a:b"),  # type: ignore[arg-type]
    }
    for message, acl in bad.items():
        with pytest.raises(ConfigError, match=message):
            check_acl(acl)
    with pytest.raises(ConfigError, match="--acl-operator"):
        check_acl(ElectionACL((), ("world:anyone",)), "--acl")


def test_the_path_lets_participants_join_and_leave_and_operators_write_only() -> None:
    acl = ElectionACL((ALICE, BOB), (OSCAR,), (X509,))
    entries = {e.who: e.perms for e in path_acl(acl, ours=(ALICE,))}
    assert entries == {"auth:": ALL, BOB: ALL, OSCAR: READ | WRITE, X509: READ}
    nodes = {e.who: e.perms for e in node_acl(acl)}
    assert nodes == {"auth:": ALL, ALICE: READ, BOB: READ, OSCAR: READ | WRITE, X509: READ}
    assert not any(e.perms & (CREATE | DELETE) for e in node_acl(acl) if e.scheme != "auth")


def test_the_delete_check_refuses_only_when_no_entry_can_be_ours() -> None:
    closed = [
        AclEntry("digest", BOB.split(":", 1)[1], ALL),
        AclEntry("digest", ALICE.split(":", 1)[1], READ | CREATE),
    ]
    assert not can_delete_children(closed, [ALICE])
    assert can_delete_children([AclEntry("digest", ALICE.split(":", 1)[1], DELETE)], [ALICE])
    assert can_delete_children([AclEntry("world", "anyone", ALL)], [])
    # Masked for a session without ADMIN: our user may be it.
    assert can_delete_children([AclEntry("digest", "alice:x", DELETE)], [ALICE])
    assert not can_delete_children([AclEntry("digest", "bob:x", DELETE)], [ALICE])
    x509 = [AclEntry("x509", "CN=alpha", ALL)]
    assert can_delete_children(x509, [ALICE], ["x509"]) and not can_delete_children(x509, [ALICE])


def test_open_rights_and_descriptions() -> None:
    assert open_rights([AclEntry("world", "anyone", ALL)]) == ALL & ~READ
    assert open_rights([AclEntry("world", "anyone", READ), AclEntry("digest", "a:b", ALL)]) == 0
    assert perms_text(ALL) == "cdrwa" and perms_text(READ | WRITE) == "rw"
    entries = [AclEntry("digest", "a:x", READ), AclEntry("digest", "a:x", WRITE)]
    assert describe(entries) == "digest:a:x:rw" and describe([]) == "(none)"


def test_the_daemon_reads_acl_ids_from_flags_environment_and_the_acl_table(tmp_path: Path) -> None:
    secret = tmp_path / "auth"
    secret.write_text("digest alice:pw\n")
    secret.chmod(0o600)
    base = ["--hosts", "zk:2181", "--path", "/e", "--auth-file", str(secret)]
    assert load_daemon_config(base, {}).acl is None
    config = load_daemon_config(
        [*base, "--acl-participant", ALICE, "--acl-participant", BOB, "--acl-operator", OSCAR], {}
    )
    assert config.acl == ElectionACL((ALICE, BOB), (OSCAR,), ())
    config = load_daemon_config(base, {"ELECTION_DAEMON_ACL_READER": f"{X509}; world:anyone"})
    assert config.acl == ElectionACL((), (), (X509, "world:anyone"))
    toml = tmp_path / "config.toml"
    toml.write_text(
        f'[acl]\nparticipants = ["{ALICE}"]\noperators = ["{OSCAR}"]\nreaders = ["world:anyone"]\n'
    )
    config = load_daemon_config([*base, "--config", str(toml)], {})
    assert config.acl == ElectionACL((ALICE,), (OSCAR,), ("world:anyone",))
    toml.write_text('[acl]\nwriters = ["x"]\n')
    with pytest.raises(ConfigError, match="unknown key 'writers' in \\[acl\\]"):
        load_daemon_config([*base, "--config", str(toml)], {})
    with pytest.raises(ConfigError, match="may only be a reader"):
        load_daemon_config([*base, "--acl-participant", "world:anyone"], {})
    with pytest.raises(ConfigError, match="ACLs need an identity"):
        load_daemon_config(["--hosts", "zk:2181", "--path", "/e", "--acl-participant", ALICE], {})
