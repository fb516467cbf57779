"""TLS and digest authentication against the harness's secured servers: the library, the daemon
(a subprocess) and ``status``; every failure one line, its exit code, within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _daemons import Daemons, run_daemon
from kazoo.client import KazooClient
from kazoo.security import make_acl

from election_daemon import Election
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import AuthFailedError, ConfigError, NoAuthError, TLSError
from election_daemon.library.observer import Observer
from election_daemon.library.security import DigestAuth
from election_daemon.testing import TlsFiles, ZooKeeperEnsemble, digest_id
from election_daemon.testing.pytest_plugin import ZooKeeperFactory

PASSWORD = "s3cret-Pa55word"
T = 2.0
# A refusal must end the daemon long before --connect-timeout (30 s here).
PROMPT_S = 8.0


def tls_args(files: TlsFiles, *, cert: str | None = "client", ca: Path | None = None) -> list[str]:
    args = ["--tls-ca", str(ca or files.ca)]
    if cert is not None:
        pair = getattr(files, cert)
        args += ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]
    return args


def auth_file(directory: Path, credentials: str = f"alice:{PASSWORD}", mode: int = 0o600) -> Path:
    path = directory / "zk-auth"
    path.write_text(f"# ZooKeeper credentials\ndigest {credentials}\n")
    path.chmod(mode)
    return path


@pytest.fixture
def enforcing(zk_factory: ZooKeeperFactory) -> ZooKeeperEnsemble:
    """A server closing every session without a digest or x509 identity; TLS beside plain."""
    return zk_factory(tls=True, enforce_auth=("digest", "x509"))


def refused_run(args: list[str]) -> tuple[int, str, float]:
    """Run the daemon to its end: (exit code, stderr, seconds), stdout checked for the password
    and for being JSON lines only (aiozk prints codes it does not know; the adapter teaches it)."""
    started = time.monotonic()
    done = run_daemon([*args, "--connect-timeout", "30", "--log-format", "json"], timeout_s=40)
    took = time.monotonic() - started
    assert PASSWORD not in done.stdout + done.stderr
    for line in done.stdout.splitlines():
        assert isinstance(json.loads(line), dict), line
    return done.returncode, done.stderr, took


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("election-daemon: error: "), stderr
    return lines[0]


# -- the library ------------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_the_library_elects_and_fails_over_over_mutual_tls(
    zk_tls_hosts: str, tls_files: TlsFiles, zk_path: str
) -> None:
    context = tls_files.client_context(tls_files.client)
    a = Election(zk_tls_hosts, zk_path, identity="a", session_timeout_s=T, tls=context)
    b = Election(
        zk_tls_hosts,
        zk_path,
        identity="b",
        session_timeout_s=T,
        tls_ca=tls_files.ca,
        tls_cert=tls_files.client.cert,
        tls_key=tls_files.client.key,
    )
    observer = Observer(zk_tls_hosts, zk_path, tls=context)
    await a.start()
    await b.start()
    await observer.start()
    try:
        first = await a.wait_for_leadership(10)
        await a.stop()
        second = await b.wait_for_leadership(10)
        assert second.token > first.token
        for _ in range(50):
            view = await observer.snapshot()
            if view.leader is not None and view.leader.id == "b":
                break
            await asyncio.sleep(0.1)
        view = await observer.snapshot()
        assert view.leader is not None and view.leader.id == "b"
    finally:
        await observer.stop()
        await a.stop()
        await b.stop()


@pytest.mark.timeout(90)
async def test_the_library_raises_tls_error_at_once(
    zk_tls: ZooKeeperEnsemble, tls_files: TlsFiles, zk_path: str
) -> None:
    cases = {
        "not trusted": (tls_files.foreign_ca, tls_files.client),
        "refused the TLS handshake": (tls_files.ca, tls_files.expired_client),
    }
    for cause, (ca, cert) in cases.items():
        election = Election(
            zk_tls.secure_hosts,
            zk_path,
            session_timeout_s=T,
            connect_timeout_s=30,
            tls_ca=ca,
            tls_cert=cert.cert,
            tls_key=cert.key,
        )
        started = time.monotonic()
        with pytest.raises(TLSError, match=cause):
            await election.start()
        assert time.monotonic() - started < PROMPT_S
        await election.stop()


@pytest.mark.timeout(90)
async def test_digest_auth_passes_enforced_authentication_and_anonymous_sessions_are_refused(
    enforcing: ZooKeeperEnsemble, zk_path: str
) -> None:
    election = Election(enforcing.hosts, zk_path, session_timeout_s=T, auth=f"alice:{PASSWORD}")
    await election.start()
    try:
        await election.wait_for_leadership(10)
    finally:
        await election.stop()
    anonymous = Election(enforcing.hosts, zk_path, session_timeout_s=T, connect_timeout_s=30)
    started = time.monotonic()
    with pytest.raises(NoAuthError, match="requires authenticated sessions"):
        await anonymous.start()
    assert time.monotonic() - started < PROMPT_S
    with contextlib.suppress(NoAuthError):
        await anonymous.stop()


@pytest.mark.timeout(90)
async def test_a_digest_acl_admits_our_authenticated_session_only(
    zk_tls: ZooKeeperEnsemble, zk_path: str
) -> None:
    kazoo = KazooClient(hosts=zk_tls.hosts, auth_data=[("digest", f"alice:{PASSWORD}")])
    kazoo.start(timeout=15)
    try:
        kazoo.create(
            zk_path, b"", acl=[make_acl("digest", digest_id("alice", PASSWORD), all=True)], makepath=True
        )
    finally:
        kazoo.stop()
        kazoo.close()
    alice = Election(zk_tls.hosts, zk_path, session_timeout_s=T, auth=DigestAuth("alice", PASSWORD))
    await alice.start()
    try:
        await alice.wait_for_leadership(10)
    finally:
        await alice.stop()
    for auth in (None, "alice:wrong"):
        other = Election(zk_tls.hosts, zk_path, session_timeout_s=T, auth=auth)
        with pytest.raises(NoAuthError):
            await other.start()
        with contextlib.suppress(NoAuthError):  # stop() raises the failure again
            await other.stop()


class _UnknownScheme(DigestAuth):
    """Credentials of a scheme the server has no provider for: it answers AuthFailed."""

    __slots__ = ()
    scheme = "nosuchscheme"


@pytest.mark.timeout(60)
async def test_rejected_credentials_raise_auth_failed_at_once(zk_hosts: str, zk_path: str) -> None:
    election = Election(
        zk_hosts, zk_path, session_timeout_s=T, connect_timeout_s=30, auth=_UnknownScheme("alice", PASSWORD)
    )
    started = time.monotonic()
    with pytest.raises(AuthFailedError, match="rejected") as caught:
        await election.start()
    assert time.monotonic() - started < PROMPT_S
    assert PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)
    await election.stop()


def test_the_library_checks_tls_and_auth_arguments_up_front(tls_files: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_key: needs tls_cert"):
        Election("127.0.0.1:2181", "/e", tls_key=tls_files.client.key)
    with pytest.raises(ConfigError, match="tls_ca: cannot read"):
        Election("127.0.0.1:2181", "/e", tls_ca=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="tls_cert: no private key"):
        Election("127.0.0.1:2181", "/e", tls_ca=tls_files.ca, tls_cert=tls_files.client.cert)
    with pytest.raises(ConfigError, match="auth"):
        Election("127.0.0.1:2181", "/e", auth="no-colon")
    assert PASSWORD not in repr(DigestAuth("alice", PASSWORD))


# -- the daemon -------------------------------------------------------------------------


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with Daemons() as started:
        yield started


@pytest.mark.timeout(120)
def test_the_daemon_elects_and_fails_over_over_mutual_tls_with_digest_auth(
    daemons: Daemons, zk_tls_hosts: str, tls_files: TlsFiles, zk_path: str, tmp_path: Path
) -> None:
    options = [*tls_args(tls_files), "--auth-file", str(auth_file(tmp_path))]
    a = daemons.start(zk_tls_hosts, zk_path, identity="a", options=options)
    a.wait_for("elected", timeout_s=20)
    b = daemons.start(zk_tls_hosts, zk_path, identity="b", options=options)
    b.wait_for("joined", timeout_s=20)
    done = run_daemon(["status", "--hosts", zk_tls_hosts, "--path", zk_path, "--json", *tls_args(tls_files)])
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert [p["id"] for p in record["participants"]] == ["a", "b"]
    a.kill()
    b.wait_for("elected", timeout_s=20)
    b.terminate()
    assert b.wait() == 0
    for daemon in (a, b):
        assert PASSWORD not in "\n".join(daemon.lines) + daemon.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("wrong_ca", "its certificate is not trusted"),
        ("expired_client", "refused the TLS handshake"),
        ("plain_to_tls", "speaks TLS on this port"),
        ("tls_to_plain", "is a plain port, not TLS"),
    ],
)
def test_each_tls_failure_is_one_line_and_exit_code_10_at_once(
    zk_tls: ZooKeeperEnsemble, tls_files: TlsFiles, zk_path: str, case: str, cause: str
) -> None:
    hosts, options = {
        "wrong_ca": (zk_tls.secure_hosts, tls_args(tls_files, ca=tls_files.foreign_ca)),
        "expired_client": (zk_tls.secure_hosts, tls_args(tls_files, cert="expired_client")),
        "plain_to_tls": (zk_tls.secure_hosts, []),
        "tls_to_plain": (zk_tls.hosts, tls_args(tls_files)),
    }[case]
    code, stderr, took = refused_run(["--hosts", hosts, "--path", zk_path, *options])
    line = one_error_line(stderr)
    assert code == ExitCode.TLS_FAILED, stderr
    assert cause in line and hosts in line
    assert took < PROMPT_S + 3  # the interpreter's start included


@pytest.mark.timeout(120)
def test_a_host_name_mismatch_is_exit_code_10_unless_explicitly_allowed(
    zk_factory: ZooKeeperFactory, tls_files: TlsFiles, zk_path: str
) -> None:
    ensemble = zk_factory(tls=True, server_cert=tls_files.wrong_host_server, client_auth="none")
    args = ["--hosts", ensemble.secure_hosts, "--path", zk_path, "--tls-ca", str(tls_files.ca)]
    code, stderr, _ = refused_run(args)
    assert code == ExitCode.TLS_FAILED and "not for this host" in one_error_line(stderr)
    done = run_daemon(["status", *args, "--tls-no-verify-hostname", "--json"])
    # Connected and answered: nobody made the election path here, so status says so (exit 2).
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "warning: --tls-no-verify-hostname" in done.stderr
    assert f"error: --path: no election at {zk_path}: no such path" in done.stderr


@pytest.mark.timeout(120)
def test_wrong_password_and_open_auth_files_are_refused(
    zk_tls: ZooKeeperEnsemble, zk_path: str, tmp_path: Path
) -> None:
    kazoo = KazooClient(hosts=zk_tls.hosts, auth_data=[("digest", f"alice:{PASSWORD}")])
    kazoo.start(timeout=15)
    try:
        kazoo.create(
            zk_path, b"", acl=[make_acl("digest", digest_id("alice", PASSWORD), all=True)], makepath=True
        )
    finally:
        kazoo.stop()
        kazoo.close()
    base = ["--hosts", zk_tls.hosts, "--path", zk_path, "--session-timeout", "2"]
    wrong = auth_file(tmp_path, "alice:wrong-" + PASSWORD)
    code, stderr, took = refused_run([*base, "--auth-file", str(wrong)])
    assert code == ExitCode.ZK_REFUSED and "not permitted" in one_error_line(stderr)
    assert took < PROMPT_S + 3
    wrong.unlink()
    shared = auth_file(tmp_path, mode=0o644)
    code, stderr, _ = refused_run([*base, "--auth-file", str(shared)])
    assert code == ExitCode.USAGE and "readable by others" in one_error_line(stderr)
    # The environment names the file; it never holds the password.
    done = run_daemon(base, env={"ELECTION_DAEMON_AUTH_FILE": str(shared)})
    assert done.returncode == ExitCode.USAGE and "(from ELECTION_DAEMON_AUTH_FILE)" in done.stderr


@pytest.mark.timeout(120)
def test_the_daemon_with_digest_auth_passes_enforced_authentication(
    daemons: Daemons, enforcing: ZooKeeperEnsemble, zk_path: str, tmp_path: Path
) -> None:
    a = daemons.start(
        enforcing.hosts, zk_path, identity="a", options=["--auth-file", str(auth_file(tmp_path))]
    )
    a.wait_for("elected", timeout_s=20)
    a.terminate()
    assert a.wait() == 0
    assert PASSWORD not in "\n".join(a.lines) + a.stderr
    code, stderr, took = refused_run(["--hosts", enforcing.hosts, "--path", zk_path])
    assert code == ExitCode.ZK_REFUSED and "requires authenticated sessions" in one_error_line(stderr)
    assert took < PROMPT_S + 3
