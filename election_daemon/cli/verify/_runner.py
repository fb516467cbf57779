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
import random
import shutil
import signal
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
from election_daemon.errors import ConnectTimeoutError, NoNodeError, ZooKeeperError
from election_daemon.library._zk import ZooKeeper
from election_daemon.library.limits import format_servers, parse_hosts
from election_daemon.testing import ZooKeeperEnsemble, daemon_environment, signal_group, start_process

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
                progress.say(f"starting a {options.ensemble_size}-server ZooKeeper ensemble")
                ensemble: ZooKeeperEnsemble | None = ZooKeeperEnsemble(
                    options.ensemble_size,
                    tick_time_ms=_TICK_MS,
                    quorum_proxies=True,
                    max_session_timeout_ms=max(_DEFAULT_MAX_SESSION_TIMEOUT_MS, int(T * 1000)),
                )
                assert ensemble is not None
                stack.callback(ensemble.close)
                await asyncio.to_thread(ensemble.start)
                servers = [("127.0.0.1", server.client_port) for server in ensemble.servers]
                chroot = None
                admin_hosts = ensemble.hosts
            else:
                ensemble = None
                parsed, chroot = parse_hosts(options.hosts, field="--hosts")
                servers = list(parsed)
                admin_hosts = options.hosts
                stack.push_async_callback(_delete_path, admin_hosts, path, T)
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
            )
            progress.say(
                f"first leader after {calibration_s:.2f} s; liveness bound T + X = "
                f"{params.liveness_bound_s:.2f} s"
            )
            world = World(
                fleet=fleet, ensemble=ensemble, admin_hosts=admin_hosts, path=path, session_timeout_s=T
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


async def _delete_path(hosts: str, path: str, session_timeout_s: float) -> None:
    """Leave the user's ZooKeeper as it was: remove the run's election path (best effort)."""
    servers, chroot = parse_hosts(hosts)
    zk = ZooKeeper.create(format_servers(servers), chroot=chroot, session_timeout_s=session_timeout_s)
    with contextlib.suppress(ZooKeeperError, OSError):
        await zk.start(connect_timeout_s=10.0)
        with contextlib.suppress(NoNodeError):
            for child in await zk.children(path):
                with contextlib.suppress(NoNodeError):
                    await zk.delete(f"{path}/{child}")
            await zk.delete(path)
    await zk.close()
