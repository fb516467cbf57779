"""ACLs on the election path and its nodes (issue 9, section 3), against a real server with
digest authentication, and x509 identities over mutual TLS.

Every attack of the issue's "Why" is replayed by an unauthenticated kazoo client and by an
authenticated stranger (neither participant nor operator): ZooKeeper refuses each one
(kazoo's NoAuthError) and the election is undisturbed (same leader, same token, nobody
revoked). Then: a path whose ACL forbids our delete is refused at start (library and
daemon: exit 4, one line, no node of ours left behind); ``step-down`` works with an operator's
credentials and is refused (exit 4, one line) without; ``status`` shows the ACL and warns
when it is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _daemons import run_daemon
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError as KazooNoAuthError
from kazoo.security import make_acl

from election_daemon import Election
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import NoAuthError
from election_daemon.library.acl import ElectionACL
from election_daemon.library.security import DigestAuth
from election_daemon.testing import TlsFiles, ZooKeeperEnsemble, digest_id

T = 2.0
SETTLE_S = 1.0
"""How long an attack is given to disturb the election (several watch round trips)."""

USERS = {name: f"{name}-pw-0123" for name in ("alice", "carol", "oscar", "mallory")}
"""alice and carol participate, oscar operates, mallory is a stranger with valid credentials."""


def ident(user: str) -> str:
    return f"digest:{digest_id(user, USERS[user])}"


def creds(user: str) -> str:
    return f"{user}:{USERS[user]}"


ACL = ElectionACL(participants=(ident("alice"), ident("carol")), operators=(ident("oscar"),))


@contextlib.contextmanager
def kazoo(hosts: str, user: str | None) -> Iterator[KazooClient]:
    auth = [] if user is None else [("digest", creds(user))]
    client = KazooClient(hosts=hosts, auth_data=auth, timeout=5.0)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def auth_file(directory: Path, user: str) -> Path:
    path = directory / f"{user}.auth"
    path.write_text(f"digest {creds(user)}\n")
    path.chmod(0o600)
    return path


@dataclass
class Running:
    hosts: str
    path: str
    leader: Election
    follower: Election
    token: int
    revoked: list[object]

    async def assert_undisturbed(self) -> None:
        await asyncio.sleep(SETTLE_S)
        assert self.revoked == []
        term = self.leader.term
        assert self.leader.is_leader and term is not None and term.token == self.token
        assert not self.follower.is_leader
        leader = await self.follower.leader()
        assert leader is not None and leader.id == "alpha" and leader.token == self.token
        assert [p.id for p in await self.follower.participants()] == ["alpha", "beta"]


@pytest.fixture
async def running(zk_hosts: str, zk_path: str) -> AsyncIterator[Running]:
    """alpha (alice) leads, beta (carol) follows, on a path created with ACL."""
    alpha = Election(zk_hosts, zk_path, identity="alpha", session_timeout_s=T, auth=creds("alice"), acl=ACL)
    beta = Election(zk_hosts, zk_path, identity="beta", session_timeout_s=T, auth=creds("carol"), acl=ACL)
    revoked: list[object] = []
    alpha.on_revoked(revoked.append)
    await alpha.start()
    try:
        term = await alpha.wait_for_leadership(10)
        await beta.start()
        yield Running(zk_hosts, zk_path, alpha, beta, term.token, revoked)
    finally:
        await beta.stop()
        await alpha.stop()


def _step_down(r: Running, client: KazooClient) -> None:
    assert r.leader.node is not None
    client.set(r.leader.node, json.dumps({"id": "alpha", "step_down": {"request": "forged"}}).encode())


def _delete(r: Running, client: KazooClient) -> None:
    assert r.leader.node is not None
    client.delete(r.leader.node)


def _queue_jump(r: Running, client: KazooClient) -> None:
    client.create(f"{r.path}/n_0000000000", json.dumps({"id": "alpha"}).encode(), ephemeral=True)


def _handover(r: Running, client: KazooClient) -> None:
    assert r.follower.node is not None
    client.set(r.path, json.dumps({"handover_to": r.follower.node, "request": "forged"}).encode())


ATTACKS: dict[str, Callable[[Running, KazooClient], None]] = {
    "step_down_request_in_the_leaders_node": _step_down,
    "delete_the_leaders_node": _delete,
    "queue_jump_with_a_hand_made_node": _queue_jump,
    "forged_handover_in_the_paths_data": _handover,
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("attacker", [None, "mallory"], ids=["anonymous", "authenticated_stranger"])
@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_each_attack_is_refused_by_zookeeper_and_the_election_is_undisturbed(
    running: Running, attack: str, attacker: str | None
) -> None:
    def replay() -> None:
        with kazoo(running.hosts, attacker) as client, pytest.raises(KazooNoAuthError):
            ATTACKS[attack](running, client)

    await asyncio.to_thread(replay)
    await running.assert_undisturbed()


@pytest.mark.timeout(90)
async def test_another_participant_cannot_write_a_step_down_into_the_leaders_node(running: Running) -> None:
    def replay() -> None:
        with kazoo(running.hosts, "carol") as client, pytest.raises(KazooNoAuthError):
            _step_down(running, client)

    await asyncio.to_thread(replay)
    await running.assert_undisturbed()


@pytest.mark.timeout(90)
async def test_the_path_and_nodes_carry_the_model(running: Running) -> None:
    def read() -> tuple[list[Any], list[Any]]:
        with kazoo(running.hosts, "oscar") as client:
            assert running.leader.node is not None
            return client.get_acls(running.path)[0], client.get_acls(running.leader.node)[0]

    path_acl, node_acl = await asyncio.to_thread(read)
    # ZooKeeper masks the digest hashes ("alice:x") for a session without ADMIN, like oscar's.
    rights = {f"{a.id.scheme}:{a.id.id}": a.perms for a in path_acl}
    assert rights == {"digest:alice:x": 31, "digest:carol:x": 31, "digest:oscar:x": 3}
    rights = {f"{a.id.scheme}:{a.id.id}": a.perms for a in node_acl}
    # alice created the node (all rights); carol reads it; oscar may write a step-down.
    assert rights == {"digest:alice:x": 31, "digest:carol:x": 1, "digest:oscar:x": 3}


def _make_path(hosts: str, path: str, *, delete: bool) -> None:
    with kazoo(hosts, "alice") as client:
        acl = make_acl("digest", digest_id("alice", USERS["alice"]), read=True, write=True, create=True)
        acl_d = make_acl("digest", digest_id("alice", USERS["alice"]), all=True)
        client.create(path, b"", acl=[acl_d if delete else acl], makepath=True)


@pytest.mark.timeout(90)
async def test_the_library_refuses_a_path_whose_acl_forbids_our_delete(zk_hosts: str, zk_path: str) -> None:
    await asyncio.to_thread(_make_path, zk_hosts, zk_path, delete=False)
    election = Election(zk_hosts, zk_path, session_timeout_s=T, auth=creds("alice"), acl=ACL)
    with pytest.raises(NoAuthError, match="no DELETE"):
        await election.start()
    with contextlib.suppress(NoAuthError):
        await election.stop()
    with kazoo(zk_hosts, "alice") as client:
        assert client.get_children(zk_path) == []


@pytest.mark.timeout(90)
def test_the_daemon_refuses_a_path_whose_acl_forbids_our_delete(
    zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    _make_path(zk_hosts, zk_path, delete=False)
    done = run_daemon(
        [
            "--hosts",
            zk_hosts,
            "--path",
            zk_path,
            "--session-timeout",
            "2",
            "--auth-file",
            str(auth_file(tmp_path, "alice")),
            "--acl-participant",
            ident("alice"),
            "--log-format",
            "json",
        ],
        timeout_s=40,
    )
    assert done.returncode == ExitCode.ZK_REFUSED, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no DELETE" in lines[0], done.stderr
    assert USERS["alice"] not in done.stdout + done.stderr
    with kazoo(zk_hosts, "alice") as client:
        assert client.get_children(zk_path) == []


@pytest.mark.timeout(120)
async def test_step_down_works_for_an_operator_and_is_refused_otherwise(
    running: Running, tmp_path: Path
) -> None:
    base = ["step-down", "--hosts", running.hosts, "--path", running.path, "--wait", "10"]
    for who in (None, "mallory", "carol"):
        options = [] if who is None else ["--auth-file", str(auth_file(tmp_path, who))]
        done = await asyncio.to_thread(run_daemon, [*base, *options])
        assert done.returncode == ExitCode.ZK_REFUSED, (who, done.stdout, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "operator" in lines[0], done.stderr
    await running.assert_undisturbed()
    done = await asyncio.to_thread(run_daemon, [*base, "--auth-file", str(auth_file(tmp_path, "oscar"))])
    assert done.returncode == ExitCode.OK, done.stderr
    assert "'alpha'" in done.stdout and "'beta'" in done.stdout
    term = await running.follower.wait_for_leadership(10)
    assert term.token > running.token


@pytest.mark.timeout(120)
async def test_a_handover_works_for_an_operator(running: Running, tmp_path: Path) -> None:
    options = ["--auth-file", str(auth_file(tmp_path, "oscar")), "--to", "beta", "--wait", "10"]
    done = await asyncio.to_thread(
        run_daemon, ["step-down", "--hosts", running.hosts, "--path", running.path, *options]
    )
    assert done.returncode == ExitCode.OK, done.stderr
    await running.follower.wait_for_leadership(10)


@pytest.mark.timeout(90)
async def test_status_shows_the_acl_and_warns_only_when_it_is_open(
    running: Running, zk_hosts: str, tmp_path: Path
) -> None:
    args = ["status", "--hosts", running.hosts, "--path", running.path]
    oscar = ["--auth-file", str(auth_file(tmp_path, "oscar"))]
    done = await asyncio.to_thread(run_daemon, [*args, *oscar, "--json"])
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert {entry["id"]: entry["perms"] for entry in record["acl"]} == {
        "digest:alice:x": "cdrwa",
        "digest:carol:x": "cdrwa",
        "digest:oscar:x": "rw",
    }
    assert record["acl_warning"] is None
    assert [p["id"] for p in record["participants"]] == ["alpha", "beta"]
    done = await asyncio.to_thread(run_daemon, [*args, *oscar])
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    assert "acl: digest:alice:x:cdrwa, digest:carol:x:cdrwa, digest:oscar:x:rw" in done.stdout
    # Without ACL options: today's open path, and status says so.
    open_path = running.path + "-open"
    election = Election(zk_hosts, open_path, identity="open", session_timeout_s=T)
    await election.start()
    try:
        done = await asyncio.to_thread(
            run_daemon, ["status", "--hosts", zk_hosts, "--path", open_path, "--json"]
        )
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        assert record["acl"] == [{"id": "world:anyone", "perms": "cdrwa"}]
        assert "world:anyone may cdwa" in record["acl_warning"]
        done = await asyncio.to_thread(run_daemon, ["status", "--hosts", zk_hosts, "--path", open_path])
        assert "warning: the ACL of" in done.stderr and "world:anyone may cdwa" in done.stderr
    finally:
        await election.stop()


def test_digest_ids_are_zookeepers() -> None:
    assert DigestAuth("alice", USERS["alice"]).acl_id() == ident("alice")


# -- x509 identities ----------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_x509_participants_and_operators(
    zk_tls: ZooKeeperEnsemble, zk_tls_hosts: str, tls_files: TlsFiles, zk_path: str, tmp_path: Path
) -> None:
    """A participant by certificate leads, one by digest follows; the operator's certificate may
    ask for a step-down but neither delete nor join; strangers are refused as with digest."""
    acl = ElectionACL(
        participants=(f"x509:{tls_files.client.x509_id}", ident("carol")),
        operators=(f"x509:{tls_files.operator.x509_id}",),
    )
    context = tls_files.client_context(tls_files.client)
    alpha = Election(zk_tls_hosts, zk_path, identity="alpha", session_timeout_s=T, tls=context, acl=acl)
    beta = Election(zk_tls.hosts, zk_path, identity="beta", session_timeout_s=T, auth=creds("carol"), acl=acl)
    revoked: list[object] = []
    alpha.on_revoked(revoked.append)
    await alpha.start()
    try:
        term = await alpha.wait_for_leadership(10)
        await beta.start()
        r = Running(zk_tls.hosts, zk_path, alpha, beta, term.token, revoked)

        def attacks() -> None:
            operator = KazooClient(
                hosts=zk_tls_hosts,
                use_ssl=True,
                ca=str(tls_files.ca),
                verify_certs=True,
                certfile=str(tls_files.operator.cert),
                keyfile=str(tls_files.operator.key),
                timeout=5.0,
            )
            operator.start(timeout=15)
            try:
                for attack in (_delete, _queue_jump):
                    with pytest.raises(KazooNoAuthError):
                        attack(r, operator)
            finally:
                operator.stop()
                operator.close()
            for attacker in (None, "mallory"):
                with kazoo(zk_tls.hosts, attacker) as client:
                    for replay in ATTACKS.values():
                        with pytest.raises(KazooNoAuthError):
                            replay(r, client)

        await asyncio.to_thread(attacks)
        await r.assert_undisturbed()
        options = [
            "--tls-ca",
            str(tls_files.ca),
            "--tls-cert",
            str(tls_files.operator.cert),
            "--tls-key",
            str(tls_files.operator.key),
        ]
        done = await asyncio.to_thread(
            run_daemon, ["step-down", "--hosts", zk_tls_hosts, "--path", zk_path, "--wait", "10", *options]
        )
        assert done.returncode == ExitCode.OK, done.stderr
        assert (await beta.wait_for_leadership(10)).token > term.token
    finally:
        await beta.stop()
        await alpha.stop()
