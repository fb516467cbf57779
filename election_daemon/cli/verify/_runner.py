"""One verify run, start to verdict: ZooKeeper, the register, the daemons, the fault schedule, the history.

The order of things:

1. a local ensemble (or the user's ZooKeeper), the register process, the daemons;
2. the first election, whose duration calibrates the slack X of the liveness bound;
3. faults on the seeded schedule, each followed by waiting for a leader and a short gap;
4. a quiet period, then every daemon stopped (followers first), then the register;
5. the register's records read back from its database, everything merged by monotonic time,
   checked, and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from election_daemon.cli.verify._checker import CheckParams, Verdict, check
from election_daemon.cli.verify._fleet import Fleet
from election_daemon.cli.verify._history import History, Recorder
from election_daemon.cli.verify._nemesis import Nemesis, World
from election_daemon.cli.verify._options import VerifyOptions
from election_daemon.cli.verify._register import history_records
from election_daemon.errors import ConfigError, ConnectTimeoutError, NoNodeError, ZooKeeperError
from election_daemon.library._zk import ZooKeeper
from election_daemon.library.limits import format_servers, parse_hosts
from election_daemon.library.security import DigestAuth, check_tls, read_auth_file
from election_daemon.testing import (
    TlsFiles,
    ZooKeeperEnsemble,
    daemon_environment,
    make_tls_files,
    signal_group,
    start_process,
)

__all__ = ["RunResult", "run"]

_TICK_MS = 200
_DEFAULT_MAX_SESSION_TIMEOUT_MS = 20 * _TICK_MS
_FIRST_ELECTION_S = 60.0
_REGISTER_START_S = 20.0
_WRITE_INTERVAL_S = 0.05
# The liveness slack X: at least this, or twice the first election (a measure of this
# machine's speed at the moment: interpreter start, connection, join, command start).
_MIN_SLACK_S = 2.0
# Beyond the liveness bound, how long to wait for a leader before the next fault anyway.
_SETTLE_EXTRA_S = 20.0


@dataclass(frozen=True, slots=True)
class _Security:
    """How the daemons and the operator faults reach ZooKeeper."""

    daemon_options: tuple[str, ...] = ()
    admin_tls: ssl.SSLContext | None = None
    admin_auth: tuple[DigestAuth, ...] = ()
    admin_identity: str = "anonymous"
    """Who the deletions and junk writes act as, for the record."""
    operator_auth: tuple[DigestAuth, ...] | None = None
    """The step-down requests' credentials (None: ``admin_auth``'s)."""
    operator_identity: str | None = None
    description: str = "plain"


@dataclass(frozen=True, slots=True)
class RunResult:
    history: History
    verdict: Verdict
    params: CheckParams
    skipped: tuple[str, ...]


async def run(options: VerifyOptions, environ: Mapping[str, str], out: TextIO) -> RunResult:  # noqa: PLR0915 (the run's phases, in order)
    """Run the whole verification; the report files are the caller's business."""
    options.report_dir.mkdir(parents=True, exist_ok=True)
    for stale in options.report_dir.glob("register.db*"):
        stale.unlink()
    # Unix socket paths are short (108 bytes): the socket lives in a temporary directory.
    work = Path(tempfile.mkdtemp(prefix="election-verify-"))
    recorder = Recorder()
    T = options.session_timeout_s
    path = f"/election-daemon-verify/run-{options.seed}-{int(time.time())}"
    progress = _Progress(out)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if options.hosts is None:
                tls_files, superuser, security = (
                    await asyncio.to_thread(_local_tls, work) if options.tls else (None, None, _Security())
                )
                progress.say(
                    f"starting a {options.ensemble_size}-server ZooKeeper ensemble"
                    + (" (mutual TLS only, digest authentication enforced)" if options.tls else "")
                )
                ensemble: ZooKeeperEnsemble | None = ZooKeeperEnsemble(
                    options.ensemble_size,
                    tick_time_ms=_TICK_MS,
                    quorum_proxies=True,
                    max_session_timeout_ms=max(_DEFAULT_MAX_SESSION_TIMEOUT_MS, int(T * 1000)),
                    tls=tls_files,
                    client_auth="need",
                    enforce_auth=("digest",) if options.tls else (),
                    plain_port=not options.tls,
                    superuser=superuser,
                )
                assert ensemble is not None
                stack.callback(ensemble.close)
                await asyncio.to_thread(ensemble.start)
                servers = [
                    ("127.0.0.1", _port(server.secure_client_port if options.tls else server.client_port))
                    for server in ensemble.servers
                ]
                chroot = None
                admin_hosts = ensemble.secure_hosts if options.tls else ensemble.hosts
            else:
                ensemble = None
                parsed, chroot = parse_hosts(options.hosts, field="--hosts")
                servers = list(parsed)
                admin_hosts = options.hosts
                security = _hosts_security(options)
                stack.push_async_callback(_delete_path, admin_hosts, path, T, security)
            db = options.report_dir / "register.db"
            socket_path = work / "register.sock"
            register = await _start_register(db, socket_path, environ, options.report_dir)
            stack.push_async_callback(_stop_register, register)
            fleet = Fleet(
                recorder=recorder,
                servers=servers,
                chroot=chroot,
                path=path,
                session_timeout_s=T,
                count=options.participants,
                register_socket=socket_path,
                write_interval_s=_WRITE_INTERVAL_S,
                log_dir=options.report_dir,
                environ=daemon_environment(environ=environ),
                daemon_options=security.daemon_options,
            )
            stack.push_async_callback(fleet.close)
            started = time.monotonic()
            progress.say(f"starting {options.participants} daemons on {path} (T = {T:g} s)")
            await fleet.start_all()
            if await fleet.wait_leader(_FIRST_ELECTION_S) is None:
                raise ConnectTimeoutError(
                    f"no leader was elected within {_FIRST_ELECTION_S:g} s; "
                    f"the daemons' stderr is in {options.report_dir}/p*.stderr"
                )
            calibration_s = time.monotonic() - started
            params = CheckParams(
                session_timeout_s=T,
                slack_s=max(_MIN_SLACK_S, 2 * calibration_s),
                kill_grace_s=options.kill_grace_s,
            )
            world = World(
                fleet=fleet,
                ensemble=ensemble,
                admin_hosts=admin_hosts,
                path=path,
                session_timeout_s=T,
                admin_tls=security.admin_tls,
                admin_auth=security.admin_auth,
                admin_identity=security.admin_identity,
                operator_auth=security.operator_auth,
                operator_identity=security.operator_identity,
            )
            recorder.add(
                started - 1e-6,
                "runner",
                "params",
                seed=options.seed,
                mode=options.mode,
                session_timeout_s=T,
                slack_s=round(params.slack_s, 3),
                kill_grace_s=round(params.kill_grace_s, 6),
                tick_s=_TICK_MS / 1000 if ensemble is not None else None,
                first_election_s=round(calibration_s, 3),
                participants=options.participants,
                ensemble=options.ensemble_size if ensemble is not None else None,
                hosts=options.hosts,
                faults_from=list(options.faults_from),
                path=path,
                security=security.description,
                fault_identities=world.identities(),
            )
            progress.say(
                f"first leader after {calibration_s:.2f} s; liveness bound T + X = "
                f"{params.liveness_bound_s:.2f} s"
            )
            skipped = await _schedule(options, world, recorder, params, progress)
            await asyncio.sleep((2 if options.quick else 3) * T)
            progress.say("stopping the daemons")
            recorder.add(time.monotonic(), "runner", "shutdown")
        history_end = time.monotonic()
        recorder.extend(history_records(db, now=history_end))
        recorder.add(time.monotonic(), "runner", "end")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    history = recorder.history()
    return RunResult(history=history, verdict=check(history, params), params=params, skipped=skipped)


async def _schedule(
    options: VerifyOptions, world: World, recorder: Recorder, params: CheckParams, progress: _Progress
) -> tuple[str, ...]:
    """Inject faults as the mode says; the names of those that found no target."""
    rng = random.Random(options.seed)
    nemesis = Nemesis(world, recorder, rng, quick=options.quick)
    T = options.session_timeout_s
    settle_s = params.liveness_bound_s + _SETTLE_EXTRA_S
    names = list(options.faults_from)
    skipped: list[str] = []
    started = time.monotonic()

    def pending() -> str | None:
        if options.mode in ("quick", "once"):
            return queue.pop(0) if queue else None
        if options.faults is not None:
            return rng.choice(names) if nemesis_count < options.faults else None
        assert options.duration_s is not None
        return rng.choice(names) if time.monotonic() - started < options.duration_s else None

    queue = rng.sample(names, len(names)) if options.mode in ("quick", "once") else []
    retried: set[str] = set()
    nemesis_count = 0
    while (name := pending()) is not None:
        # A daemon that died by itself (the checker flags it) is replaced, to keep the run going.
        for participant in world.fleet.participants:
            if not participant.running:
                await world.fleet.start(participant)
        if await world.fleet.wait_leader(settle_s) is None:
            recorder.add(time.monotonic(), "runner", "no_leader", waited_s=settle_s)
        # A quiet spell under a settled leader before each fault.
        await asyncio.sleep(rng.uniform(0.25, 0.75) * T if options.quick else rng.uniform(0.5, 2.0) * T)
        nemesis_count += 1
        start = await nemesis.inject(name, choose_timeout_s=settle_s)
        if start is not None:
            progress.say(f"fault {nemesis_count}: {name} on {start['target']} (held {start['hold_s']:g} s)")
            if "acts" in start:
                acts = ", ".join(f"{action} x{n}" for action, n in start["acts"].items())
                progress.say(f"  acts: {acts or 'none'}")
        else:
            progress.say(f"  {name}: no target found; skipped")
            if options.mode in ("quick", "once") and name not in retried:
                retried.add(name)
                queue.append(name)
            else:
                skipped.append(name)
    if await world.fleet.wait_leader(settle_s) is None:
        recorder.add(time.monotonic(), "runner", "no_leader", waited_s=settle_s)
    return tuple(skipped)


class _Progress:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._start = time.monotonic()

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self._start:6.1f}s] {message}", file=self._out, flush=True)


async def _start_register(
    db: Path, socket_path: Path, environ: Mapping[str, str], log_dir: Path
) -> asyncio.subprocess.Process:
    with (log_dir / "register.stderr").open("ab") as stderr:
        process = await start_process(
            [
                sys.executable,
                "-m",
                "election_daemon.cli.verify._register",
                "--db",
                str(db),
                "--socket",
                str(socket_path),
            ],
            env=daemon_environment(environ=environ),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + _REGISTER_START_S
    while True:
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_unix_connection(str(socket_path))
            writer.close()
            return process
        if process.returncode is not None or time.monotonic() > deadline:
            signal_group(process.pid, signal.SIGKILL)
            raise ConnectTimeoutError(f"the register did not start: see {log_dir}/register.stderr")
        await asyncio.sleep(0.02)


async def _stop_register(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10.0)
    except TimeoutError:
        signal_group(process.pid, signal.SIGKILL)
        await process.wait()


async def _delete_path(hosts: str, path: str, session_timeout_s: float, security: _Security) -> None:
    """Leave the user's ZooKeeper as it was: remove the run's election path (best effort)."""
    servers, chroot = parse_hosts(hosts)
    zk = ZooKeeper.create(
        format_servers(servers),
        chroot=chroot,
        session_timeout_s=session_timeout_s,
        tls=security.admin_tls,
        auth=security.admin_auth,
    )
    with contextlib.suppress(ZooKeeperError, OSError):
        await zk.start(connect_timeout_s=10.0)
        with contextlib.suppress(NoNodeError):
            for child in await zk.children(path):
                with contextlib.suppress(NoNodeError):
                    await zk.delete(f"{path}/{child}")
            await zk.delete(path)
    await zk.close()


def _port(port: int | None) -> int:
    assert port is not None  # a started server has the port it was configured with
    return port


_DAEMON_USER = "verify"
_OPERATOR_USER = "operator"
_SUPERUSER = "super"


def _write_auth_file(path: Path, user: str) -> DigestAuth:
    """A digest user with a random password, in an auth file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"digest {user}:{secrets.token_urlsafe(18)}\n")
    return read_auth_file(path, "--tls")


def _local_tls(work: Path) -> tuple[TlsFiles, tuple[str, str], _Security]:
    """``--tls``: a test CA and certificates; a digest user for the daemons, the election's
    only participant, and another for the step-down requests, its only operator (each in an auth
    file readable by its owner only); and a super user for the deletions and junk writes, which
    no identity of the ACL model may do. All under ``work``."""
    try:
        files = make_tls_files(work / "tls")
    except ModuleNotFoundError as e:
        raise ConfigError("--tls", f"needs the {e.name} package to make its certificates") from None
    superuser = (_SUPERUSER, secrets.token_urlsafe(18))
    auth_file = work / "zk-auth"
    participant = _write_auth_file(auth_file, _DAEMON_USER)
    operator = _write_auth_file(work / "zk-operator-auth", _OPERATOR_USER)
    security = _Security(
        daemon_options=(
            "--tls-ca",
            str(files.ca),
            "--tls-cert",
            str(files.client.cert),
            "--tls-key",
            str(files.client.key),
            "--auth-file",
            str(auth_file),
            "--acl-participant",
            participant.acl_id(),
            "--acl-operator",
            operator.acl_id(),
        ),
        admin_tls=files.client_context(files.operator),
        admin_auth=(DigestAuth(*superuser),),
        admin_identity="superuser",
        operator_auth=(operator,),
        operator_identity="operator",
        description=(
            f"mutual TLS, digest user {_DAEMON_USER!r}, ACLs: participant {_DAEMON_USER!r}, "
            f"operator {_OPERATOR_USER!r}; step-downs as {_OPERATOR_USER!r}, deletions and "
            f"junk writes as the super user {_SUPERUSER!r}"
        ),
    )
    return files, superuser, security


def _hosts_security(options: VerifyOptions) -> _Security:
    """With ``--hosts``: the user's TLS material and credentials, for daemons and operator alike."""
    tls = check_tls(
        None,
        ca=options.tls_ca,
        cert=options.tls_cert,
        key=options.tls_key,
        verify_hostname=options.tls_verify_hostname,
        field="--tls",
    )
    auth = () if options.auth_file is None else (read_auth_file(options.auth_file, "--auth-file"),)
    flags: list[str] = []
    for flag, value in (
        ("--tls-ca", options.tls_ca),
        ("--tls-cert", options.tls_cert),
        ("--tls-key", options.tls_key),
        ("--auth-file", options.auth_file),
    ):
        if value is not None:
            flags += [flag, str(value)]
    if tls is not None and not options.tls_verify_hostname:
        flags.append("--tls-no-verify-hostname")
    parts = (["TLS"] if tls is not None else []) + ([f"digest user {auth[0].user!r}"] if auth else [])
    return _Security(
        daemon_options=tuple(flags),
        admin_tls=tls,
        admin_auth=auth,
        admin_identity=f"digest:{auth[0].user}" if auth else "anonymous",
        description=", ".join(parts) or "plain",
    )
