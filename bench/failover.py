"""Failover latency: this library and its daemon beside aiozk's and kazoo's recipes, and ``etcdctl lock``.

Starts one ZooKeeper server (tickTime 200 ms) and, for each row, a series of contenders, each
in a process of its own, two at a time: the leader and one follower whose watch on the
leader's node is in place (read from the server's ``dump`` and ``wchc`` four-letter words).
Then it stops or cuts off the leader and times how long the follower takes to lead. Contenders
report time.monotonic() (CLOCK_MONOTONIC, system-wide on Linux), so their timestamps compare
with the benchmark's own. Rows of a group run round-robin, one trial of each in turn, so that
the load of other work on the machine falls on all of them alike.

Rows (T is the session timeout, 2 s unless --session-timeout says otherwise):

- ``graceful/{library,aiozk,kazoo}``: SIGTERM to the leader, which leaves the election the
  library's way (bench/_contender.py) → the next leader's code runs.
- ``crash/{library,aiozk,kazoo}``: SIGKILL of the leader → the next leader's code runs.
- ``daemon/sigterm``: SIGTERM to the leader daemon's process group → the next daemon's command
  reads the clock (the daemon's command is :data:`_COMMAND`, as etcdctl's below).
- ``etcd/sigterm``: the same with ``etcdctl lock`` on a local single-node etcd (bench/_etcd.py),
  if ``etcd`` and ``etcdctl`` are installed; the row is skipped otherwise. SIGTERM to the
  holder's process group (etcdctl and its command) → the next holder's command reads the clock.
- ``daemon/sigkill``: SIGKILL of the leader daemon's process group → the next ``child_started``.
  Target: p95 within T + one tickTime + 300 ms.
- ``daemon/cut-gap``: the leader daemon reaches ZooKeeper through a TcpProxy that goes silent
  (:meth:`TcpProxy.cut`): from its child's exit (``child_exited``) to the new leader's
  ``child_started``. This is the safety margin; target: at least 400 ms in every trial.
- ``daemon/cut-failover``: same trials, from the cut to the new ``child_started``.

With ``--tls`` the server also serves TLS (mutual: it requires a client certificate from the
test CA), and four more rows run over it, each in the round-robin group of its plain twin:
``graceful/library-tls``, ``crash/library-tls``, ``daemon/sigterm-tls`` and
``daemon/sigkill-tls`` (the daemon with ``--tls-ca``, ``--tls-cert``, ``--tls-key``). A second
table puts the p50 of each beside its plain twin's, from the same run.

After the table: each ``daemon/sigterm`` trial step by step (:data:`_HANDOVER_STEPS`, from the
two daemons' own log lines) with the median of each step, and each row's p50 over its anchor's
(:data:`_RATIOS`: the library over aiozk and kazoo, the daemon over etcdctl) with issue 11's
targets.

Usage: ``python bench/failover.py [--trials N] [--only ROWS] [--tls] [--json FILE]``. Exit status 1 if a
row failed or missed its target, or a ratio missed its target. Every wait has a deadline, and
every process started here is killed on the way out (and by the kernel if this process is
SIGKILLed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from _etcd import EtcdServer, EtcdStartError, etcd_installed
from rich.console import Console
from rich.table import Table

from election_daemon._processes import parent_death_prefix
from election_daemon.testing import (
    DaemonEvent,
    TcpProxy,
    TlsFiles,
    ZooKeeperEnsemble,
    ZooKeeperServer,
    daemon_args,
    daemon_argv,
    daemon_environment,
    make_tls_files,
    parse_event,
    read_lines,
    signal_group,
    start_process,
)

__all__ = ["ROWS", "main"]

_TICK_TIME_MS = 200
_DEFAULT_TRIALS = 15
_DEFAULT_SESSION_TIMEOUT_S = 2.0
_START_TIMEOUT_S = 60.0
_READY_TIMEOUT_S = 30.0
_EXIT_TIMEOUT_S = 15.0
_POLL_INTERVAL_S = 0.02
_REPORT_WIDTH = 140
_CONTENDER_KINDS = ("library", "aiozk", "kazoo")
_CONTENDER_SCRIPT = Path(__file__).with_name("_contender.py")
_SEQUENCE = re.compile(r"(\d{10})$")
# The leader-only command of the daemon rows and of etcd/sigterm: one line with the time it started,
# then a long sleep. sh and date start in about a millisecond; date reads only the wall clock
# (CLOCK_REALTIME), which _Process converts to CLOCK_MONOTONIC when it reads the line.
_COMMAND = ("sh", "-c", """date '+{"event": "command_started", "realtime_s": %s.%N}'; exec sleep 3600""")
_ETCD_LOCK = "bench/etcd-sigterm"
_TLS = "-tls"
"""The suffix of the rows that run over mutual TLS (``--tls``)."""
_TLS_TWINS = ("graceful/library", "crash/library", "daemon/sigterm", "daemon/sigkill")
"""The plain rows that have a TLS twin (their key + ``_TLS``)."""
_HANDOVER_STEPS: tuple[tuple[str, Literal["old", "new"], str], ...] = (
    ("command gone", "old", "child_exited"),
    ("node deleted", "old", "stopped"),
    ("successor notified", "new", "predecessor_gone"),
    ("elected", "new", "elected"),
    ("command started", "new", "child_started"),
    ("clock read", "new", "command_started"),
)
"""A daemon handover, step by step: each step ends at the first line of this event, from the
old daemon or the new one, after the signal; it starts where the step before it ended. ``stopped``
is the old daemon's election reporting its node deleted (the delete answered)."""


@dataclass(frozen=True)
class _Ratio:
    """p50 of one row over p50 of its anchor, measured in the same run, and its target if any."""

    row: str
    anchor: str
    limit: float | None = None


_RATIOS = (
    _Ratio("graceful/library", "graceful/aiozk", 0.8),
    _Ratio("graceful/library", "graceful/kazoo"),
    _Ratio("daemon/sigterm", "etcd/sigterm", 0.7),
)
"""The comparisons the report prints, with the targets of issue 11."""


class _BenchError(Exception):
    """A trial could not be carried out: a process died, or a wait ran out."""


@dataclass(frozen=True)
class _Target:
    """A bound on one statistic of a row's samples."""

    statistic: Literal["p95", "min"]
    comparison: Literal["<=", ">="]
    limit_s: float

    def describe(self) -> str:
        return f"{self.statistic} {'≤' if self.comparison == '<=' else '≥'} {self.limit_s * 1000:.0f} ms"

    def met(self, samples_s: Sequence[float]) -> bool:
        value = _p95(samples_s) if self.statistic == "p95" else min(samples_s)
        return value <= self.limit_s if self.comparison == "<=" else value >= self.limit_s


@dataclass(frozen=True)
class Row:
    """One line of the table: what is timed, from which event to which."""

    key: str
    title: str
    target: _Target | None = None


def _rows(session_timeout_s: float) -> list[Row]:
    tick_s = _TICK_TIME_MS / 1000
    sigkill_target = _Target("p95", "<=", session_timeout_s + tick_s + 0.3)
    return [
        *(Row(f"graceful/{kind}", f"{kind}: stop → next leader runs") for kind in _CONTENDER_KINDS),
        Row(f"graceful/library{_TLS}", "library over mutual TLS: stop → next leader runs"),
        *(Row(f"crash/{kind}", f"{kind}: SIGKILL → next leader runs") for kind in _CONTENDER_KINDS),
        Row(f"crash/library{_TLS}", "library over mutual TLS: SIGKILL → next leader runs"),
        Row("daemon/sigterm", "daemon: SIGTERM → next command starts"),
        Row(f"daemon/sigterm{_TLS}", "daemon over mutual TLS: SIGTERM → next command starts"),
        Row("etcd/sigterm", "etcdctl lock: SIGTERM → next command starts"),
        Row("daemon/sigkill", "daemon: SIGKILL → next child_started", sigkill_target),
        Row(f"daemon/sigkill{_TLS}", "daemon over mutual TLS: SIGKILL → next child_started", sigkill_target),
        Row("daemon/cut-gap", "daemon cut off: child_exited → next child_started", _Target("min", ">=", 0.4)),
        Row("daemon/cut-failover", "daemon cut off: cut → next child_started"),
    ]


ROWS = tuple(row.key for row in _rows(_DEFAULT_SESSION_TIMEOUT_S))
"""Every row's key, in table order."""


@dataclass
class _Result:
    row: Row
    samples_s: list[float] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    """Why the row was not measured, when that is not a failure (etcd not installed)."""
    read_times: bool = False
    """Some sample used the time a line was read, for lack of the line's own ``monotonic_s``."""
    breakdowns_s: list[list[float | None]] = field(default_factory=list)
    """Per trial, the duration of each of :data:`_HANDOVER_STEPS` (None: a line was missing)."""

    def to_json(self) -> dict[str, Any]:
        samples = self.samples_s
        breakdown = (
            {
                "steps": [label for label, _, _ in _HANDOVER_STEPS],
                "trials_ms": [[_ms(step) for step in trial] for trial in self.breakdowns_s],
                "p50_ms": [_ms(step) for step in _step_medians(self.breakdowns_s)],
            }
            if self.breakdowns_s
            else None
        )
        return {
            "key": self.row.key,
            "title": self.row.title,
            "samples_ms": [round(s * 1000, 3) for s in samples],
            "p50_ms": round(statistics.median(samples) * 1000, 3) if samples else None,
            "p95_ms": round(_p95(samples) * 1000, 3) if samples else None,
            "min_ms": round(min(samples) * 1000, 3) if samples else None,
            "max_ms": round(max(samples) * 1000, 3) if samples else None,
            "target": self.row.target.describe() if self.row.target else None,
            "target_met": self.target_met,
            "error": self.error,
            "skipped": self.skipped,
            "read_times": self.read_times,
            "breakdown": breakdown,
        }

    @property
    def target_met(self) -> bool | None:
        if self.row.target is None or not self.samples_s:
            return None
        return self.row.target.met(self.samples_s)


def _ms(value_s: float | None) -> float | None:
    return None if value_s is None else round(value_s * 1000, 3)


def _step_medians(trials: Sequence[Sequence[float | None]]) -> list[float | None]:
    """The median of each step over the trials that have it."""
    columns = [[step for step in column if step is not None] for column in zip(*trials, strict=True)]
    return [statistics.median(column) if column else None for column in columns]


def _p95(samples_s: Sequence[float]) -> float:
    if len(samples_s) < 2:
        return samples_s[0]
    return statistics.quantiles(samples_s, n=20, method="inclusive")[-1]


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass(frozen=True)
class _Outcome:
    """One trial's samples, one per row of its scenario."""

    samples_s: list[float]
    read_times: bool
    """A line lacked ``monotonic_s``: its time is when we read it, a little late."""
    breakdown_s: list[float | None] | None = None
    """A daemon handover's :data:`_HANDOVER_STEPS` (the ``daemon/sigterm`` rows only)."""


class _Process:
    """A contender or daemon in its own process group, its stdout read as JSON lines."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.name = name
        self.process = process
        self.stderr_path = stderr_path
        self.lines: list[DaemonEvent] = []
        # Process groups of the daemon's leader-only commands that have not exited yet.
        self.child_groups: set[int] = set()
        self._changed = asyncio.Condition()
        self._eof = False
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for text in read_lines(self.process.stdout):
            received_s = time.monotonic()
            line = parse_event(text, received_s)
            if line is None:
                continue
            if isinstance(realtime_s := line.get("realtime_s"), float) and "monotonic_s" not in line:
                # The offset between the two clocks changes only if the wall clock is stepped in
                # the millisecond or so between the command's date and this read.
                line["monotonic_s"] = realtime_s - (time.time() - received_s)
            if (pgid := line.integer("pgid")) is not None:
                if line.name == "child_started":
                    self.child_groups.add(pgid)
                elif line.name == "child_exited":
                    self.child_groups.discard(pgid)
            async with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        async with self._changed:
            self._eof = True
            self._changed.notify_all()

    async def wait_event(self, event: str, timeout_s: float) -> DaemonEvent:
        """The first line with this ``event``, waiting for it up to ``timeout_s``."""

        def found() -> DaemonEvent | None:
            return next((line for line in self.lines if line.name == event), None)

        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: self._eof or found() is not None)
        except TimeoutError:
            raise _BenchError(
                f"{self.name}: no {event!r} within {timeout_s:.0f} s{self._stderr_tail()}"
            ) from None
        line = found()
        if line is None:
            raise _BenchError(f"{self.name}: exited before {event!r}{self._stderr_tail()}")
        return line

    def signal_group(self, signum: signal.Signals) -> None:
        signal_group(self.process.pid, signum)

    def kill_everything(self) -> None:
        """SIGKILL the process group and any leader-only command group it reported."""
        self.signal_group(signal.SIGKILL)
        for pgid in self.child_groups:
            with contextlib.suppress(PermissionError):
                signal_group(pgid, signal.SIGKILL)

    async def reap(self, timeout_s: float = _EXIT_TIMEOUT_S) -> None:
        """Wait for the process to exit; SIGKILL its group if it does not within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.process.wait()
        except TimeoutError:
            self.kill_everything()
            try:
                async with asyncio.timeout(_EXIT_TIMEOUT_S):
                    await self.process.wait()
            except TimeoutError:
                raise _BenchError(f"{self.name} outlived SIGKILL by {_EXIT_TIMEOUT_S:.0f} s") from None
        try:
            async with asyncio.timeout(_EXIT_TIMEOUT_S):
                await self._reader
        except TimeoutError:
            # Something it left behind holds its stdout open; its lines no longer matter.
            self._reader.cancel()

    def _stderr_tail(self) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return f"\n  stderr of {self.name}: " + "\n  ".join(text.splitlines()[-10:]) if text else ""


class _Bench:
    """The ZooKeeper server, the etcd server if any, the processes started so far, and how to start more."""

    def __init__(
        self,
        ensemble: ZooKeeperEnsemble,
        etcd: EtcdServer | None,
        session_timeout_s: float,
        directory: Path,
        tls_files: TlsFiles | None = None,
    ) -> None:
        self.ensemble = ensemble
        self.tls_files = tls_files
        self.server: ZooKeeperServer = ensemble.servers[0]
        self.etcd = etcd
        self.session_timeout_s = session_timeout_s
        self.directory = directory
        self.processes: list[_Process] = []
        self._count = 0

    async def spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> _Process:
        self._count += 1
        stderr_path = self.directory / f"{self._count:03d}-{name.replace('/', '_')}.stderr"
        with stderr_path.open("wb") as stderr:
            process = await start_process(argv, env=env, stderr=stderr)
        handle = _Process(name, process, stderr_path)
        self.processes.append(handle)
        return handle

    def _tls_options(self) -> tuple[str, ...]:
        """``--tls-ca``, ``--tls-cert``, ``--tls-key`` of a client over mutual TLS."""
        assert self.tls_files is not None
        files = self.tls_files
        return (
            "--tls-ca",
            str(files.ca),
            "--tls-cert",
            str(files.client.cert),
            "--tls-key",
            str(files.client.key),
        )

    async def spawn_contender(self, kind: str, path: str, name: str, *, tls: bool = False) -> _Process:
        hosts = self.server.secure_address if tls else self.server.address
        argv = [sys.executable, str(_CONTENDER_SCRIPT), kind, "--hosts", hosts, "--path", path]
        argv += [*self._tls_options()] if tls else []
        return await self.spawn(name, [*argv, "--session-timeout", str(self.session_timeout_s), "--id", name])

    async def spawn_daemon(
        self, path: str, name: str, hosts: str | None = None, *, tls: bool = False
    ) -> _Process:
        args = daemon_args(
            hosts or (self.server.secure_address if tls else self.server.address),
            path,
            identity=name,
            session_timeout_s=self.session_timeout_s,
            # The command's own line (its start time) on the daemon's stdout, as written.
            options=(
                "--log-format",
                "json",
                "--child-output",
                "inherit",
                *(self._tls_options() if tls else ()),
            ),
            command=_COMMAND,
        )
        return await self.spawn(name, daemon_argv(args), daemon_environment())

    async def spawn_etcdctl(self, lock: str, name: str) -> _Process:
        assert self.etcd is not None
        # etcd leases last whole seconds. etcdctl execs the command directly, as the daemon does.
        ttl_s = math.ceil(self.session_timeout_s)
        argv = ["etcdctl", f"--endpoints={self.etcd.endpoint}", "lock", f"--ttl={ttl_s}", lock]
        return await self.spawn(name, [*argv, "--", *_COMMAND])

    async def wait_follower_ready(self, path: str, contenders: int = 2) -> None:
        """Until ``contenders`` nodes are under ``path`` and another session watches the leader's node."""
        await _poll(
            lambda: self._follower_watches_leader(path, contenders),
            f"no follower watching the leader's node under {path}",
        )

    async def wait_etcd_waiter(self, lock: str) -> None:
        """Until ``etcdctl lock`` on ``lock`` has a holder and a waiter watching it."""
        assert self.etcd is not None
        await _poll(partial(self.etcd.lock_has_waiter, lock), f"no etcdctl lock waiting on {lock}")

    def _follower_watches_leader(self, path: str, contenders: int) -> bool:
        try:
            owners = _ephemeral_owners(self.server.four_letter("dump"), path)
            if len(owners) != contenders:
                return False
            leader_node = min(owners, key=_sequence)
            watchers = _watchers(self.server.four_letter("wchc"))
        except OSError:
            # A slow answer on a loaded machine: ask again until the deadline.
            return False
        return bool(watchers.get(leader_node, set()) - {owners[leader_node]})

    async def close(self) -> None:
        for process in self.processes:
            process.kill_everything()
        for process in self.processes:
            with contextlib.suppress(_BenchError):
                await process.reap()


async def _poll(ready: Callable[[], bool], failure: str) -> None:
    """Until ``ready()``, run in a thread, is true; _BenchError with ``failure`` after the deadline."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while not await asyncio.to_thread(ready):
        if time.monotonic() > deadline:
            raise _BenchError(f"{failure} after {_READY_TIMEOUT_S:.0f} s")
        await asyncio.sleep(_POLL_INTERVAL_S)


def _ephemeral_owners(dump: str, parent: str) -> dict[str, str]:
    """The ephemeral nodes directly under ``parent`` and their owner sessions, from ``dump``."""
    owners: dict[str, str] = {}
    session: str | None = None
    in_section = False
    for line in dump.splitlines():
        if line.startswith("Sessions with Ephemerals"):
            in_section = True
        elif in_section and re.fullmatch(r"0x[0-9a-fA-F]+:", line):
            session = line[:-1].lower()
        elif in_section and line.startswith("\t/") and session is not None:
            node = line.strip()
            if node.rpartition("/")[0] == parent and _SEQUENCE.search(node):
                owners[node] = session
        elif in_section:
            in_section = False
    return owners


def _watchers(wchc: str) -> dict[str, set[str]]:
    """Path → sessions watching it, from ``wchc``."""
    watchers: dict[str, set[str]] = {}
    session: str | None = None
    for line in wchc.splitlines():
        if re.fullmatch(r"0x[0-9a-fA-F]+", line):
            session = line.lower()
        elif line.startswith("\t/") and session is not None:
            watchers.setdefault(line.strip(), set()).add(session)
    return watchers


def _sequence(node: str) -> int:
    match = _SEQUENCE.search(node)
    return int(match[1]) if match else sys.maxsize


# ---------------------------------------------------------------------------------------------
# Scenarios


class _Series:
    """Leader after leader on one election path: stop or kill the leader, time the follower's takeover.

    ``follower_ready`` returns once the follower waits for the leader in the way that lets it take
    over at once (a watch in place).
    """

    def __init__(
        self,
        path: str,
        spawn: Callable[[str], Awaitable[_Process]],
        *,
        follower_ready: Callable[[], Awaitable[None]],
        leading_event: str,
        stop_signal: signal.Signals,
        session_timeout_s: float,
        breakdown: bool = False,
    ) -> None:
        self.path = path
        self.breakdown = breakdown
        self.spawn = spawn
        self.follower_ready = follower_ready
        self.leading_event = leading_event
        self.stop_signal = stop_signal
        self.session_timeout_s = session_timeout_s
        self.leader: _Process | None = None
        self.count = 0

    async def _next(self) -> _Process:
        self.count += 1
        return await self.spawn(f"{self.path}/{self.count}")

    async def start(self) -> None:
        self.leader = await self._next()
        await self.leader.wait_event(self.leading_event, _START_TIMEOUT_S)

    async def trial(self) -> _Outcome:
        assert self.leader is not None
        follower = await self._next()
        await self.follower_ready()
        requested_s = time.monotonic()
        self.leader.signal_group(self.stop_signal)
        elected = await follower.wait_event(self.leading_event, 3 * self.session_timeout_s + 10)
        old, self.leader = self.leader, follower
        await old.reap()
        steps = _handover_steps(old, follower, requested_s) if self.breakdown else None
        return _Outcome([elected.at_s - requested_s], not elected.has_own_time, steps)

    async def stop(self) -> None:
        if self.leader is not None:
            self.leader.kill_everything()
            await self.leader.reap()


def _handover_steps(old: _Process, new: _Process, requested_s: float) -> list[float | None]:
    """How long each of :data:`_HANDOVER_STEPS` took; None for a step whose line (or the line
    before it) is missing or has no ``monotonic_s`` of its own."""
    steps: list[float | None] = []
    previous_s: float | None = requested_s
    for _, whose, event in _HANDOVER_STEPS:
        lines = (old if whose == "old" else new).lines
        line = next(
            (line for line in lines if line.name == event and line.has_own_time and line.at_s >= requested_s),
            None,
        )
        at_s = line.at_s if line is not None else None
        steps.append(at_s - previous_s if at_s is not None and previous_s is not None else None)
        previous_s = at_s
    return steps


class _CutSeries:
    """A leader daemon behind a TcpProxy that goes silent, and a follower daemon connected directly."""

    def __init__(self, bench: _Bench, path: str) -> None:
        self.bench = bench
        self.path = path
        self.count = 0

    async def start(self) -> None:
        pass

    async def trial(self) -> _Outcome:
        self.count += 1
        path = f"{self.path}/{self.count}"
        with TcpProxy("127.0.0.1", self.bench.server.client_port) as proxy:
            old = await self.bench.spawn_daemon(path, f"{path}/cut", hosts=proxy.address)
            new: _Process | None = None
            try:
                await old.wait_event("child_started", _START_TIMEOUT_S)
                new = await self.bench.spawn_daemon(path, f"{path}/direct")
                await self.bench.wait_follower_ready(path)
                cut_s = time.monotonic()
                proxy.cut()
                started = await new.wait_event("child_started", 3 * self.bench.session_timeout_s + 10)
                # By now the cut-off leader must long have stopped its child: a short wait suffices.
                exited = await old.wait_event("child_exited", _EXIT_TIMEOUT_S)
            finally:
                for process in (old, new):
                    if process is not None:
                        process.kill_everything()
                        await process.reap()
        read_times = not (started.has_own_time and exited.has_own_time)
        return _Outcome([started.at_s - exited.at_s, started.at_s - cut_s], read_times)

    async def stop(self) -> None:
        pass


_Scenario = _Series | _CutSeries


_Planned = tuple[tuple[str, ...], _Scenario]
"""A scenario and the rows each of its trials fills."""


def _scenarios(bench: _Bench) -> dict[str, list[_Planned]]:
    """Every scenario, by the group whose scenarios run round-robin; etcd's only with an etcd server."""

    def series(
        path: str,
        spawn: Callable[[str], Awaitable[_Process]],
        event: str,
        stop: signal.Signals,
        ready: Callable[[], Awaitable[None]] | None = None,
        *,
        breakdown: bool = False,
    ) -> _Series:
        return _Series(
            path,
            spawn,
            follower_ready=ready or partial(bench.wait_follower_ready, path),
            leading_event=event,
            stop_signal=stop,
            session_timeout_s=bench.session_timeout_s,
            breakdown=breakdown,
        )

    def contender(kind: str, *, tls: bool = False) -> Callable[[str], Awaitable[_Process]]:
        return lambda name: bench.spawn_contender(kind, name.rpartition("/")[0], name, tls=tls)

    def daemon(name: str) -> Awaitable[_Process]:
        return bench.spawn_daemon(name.rpartition("/")[0], name)

    def tls_daemon(name: str) -> Awaitable[_Process]:
        return bench.spawn_daemon(name.rpartition("/")[0], name, tls=True)

    def etcdctl(name: str) -> Awaitable[_Process]:
        return bench.spawn_etcdctl(name.rpartition("/")[0], name)

    groups: dict[str, list[_Planned]] = {
        group: [
            ((f"{group}/{kind}",), series(f"/bench/{group}-{kind}", contender(kind), "elected", stop_signal))
            for kind in _CONTENDER_KINDS
        ]
        for group, stop_signal in (("graceful", signal.SIGTERM), ("crash", signal.SIGKILL))
    }
    if bench.tls_files is not None:
        # Beside the plain rows, one trial of each in turn: the same load on both.
        for group, stop_signal in (("graceful", signal.SIGTERM), ("crash", signal.SIGKILL)):
            tls_series = series(
                f"/bench/{group}-library{_TLS}", contender("library", tls=True), "elected", stop_signal
            )
            groups[group].append(((f"{group}/library{_TLS}",), tls_series))
    # etcdctl beside the daemon's SIGTERM row, which it is compared with.
    sigterm = series("/bench/daemon-sigterm", daemon, "command_started", signal.SIGTERM, breakdown=True)
    daemon_rows: list[_Planned] = [(("daemon/sigterm",), sigterm)]
    if bench.tls_files is not None:
        tls_sigterm = series(
            f"/bench/daemon-sigterm{_TLS}", tls_daemon, "command_started", signal.SIGTERM, breakdown=True
        )
        daemon_rows.append(((f"daemon/sigterm{_TLS}",), tls_sigterm))
    if bench.etcd is not None:
        ready = partial(bench.wait_etcd_waiter, _ETCD_LOCK)
        etcd = series(_ETCD_LOCK, etcdctl, "command_started", signal.SIGTERM, ready)
        daemon_rows.append((("etcd/sigterm",), etcd))
    daemon_rows.append(
        (("daemon/sigkill",), series("/bench/daemon-sigkill", daemon, "child_started", signal.SIGKILL))
    )
    if bench.tls_files is not None:
        tls_sigkill = series(f"/bench/daemon-sigkill{_TLS}", tls_daemon, "child_started", signal.SIGKILL)
        daemon_rows.append(((f"daemon/sigkill{_TLS}",), tls_sigkill))
    daemon_rows.append((("daemon/cut-gap", "daemon/cut-failover"), _CutSeries(bench, "/bench/daemon-cut")))
    groups["daemon"] = daemon_rows
    return groups


async def _run_group(
    scenarios: list[_Planned],
    results: dict[str, _Result],
    trials: int,
    console: Console,
) -> None:
    """Trials of every scenario in turn; a scenario that fails is reported and left out of later rounds."""

    async def attempt(keys: tuple[str, ...], step: Callable[[], Awaitable[_Outcome | None]]) -> bool:
        try:
            outcome = await step()
        except _BenchError as error:
            for key in keys:
                results[key].error = str(error)
            console.print(f"[red]{', '.join(keys)} failed:[/red] {error}")
            return False
        if outcome is not None:
            samples = outcome.samples_s
            for key, sample in zip(keys, samples, strict=True):
                results[key].samples_s.append(sample)
                results[key].read_times |= outcome.read_times
            shown = ", ".join(
                f"{key} {sample * 1000:.1f} ms" for key, sample in zip(keys, samples, strict=True)
            )
            if outcome.breakdown_s is not None:
                results[keys[0]].breakdowns_s.append(outcome.breakdown_s)
                shown += " = " + " + ".join(_step_text(step) for step in outcome.breakdown_s)
            console.print(f"[dim]  {shown}[/dim]")
        return True

    try:
        live = [(keys, scenario) for keys, scenario in scenarios if await attempt(keys, scenario.start)]
        for trial in range(1, trials + 1):
            console.print(f"[dim]trial {trial}/{trials}[/dim]")
            live = [(keys, scenario) for keys, scenario in live if await attempt(keys, scenario.trial)]
    finally:
        for _, scenario in scenarios:
            with contextlib.suppress(_BenchError, TimeoutError):
                await scenario.stop()


# ---------------------------------------------------------------------------------------------
# Report


def _table(results: list[_Result], title: str) -> Table:
    read_times = any(result.read_times for result in results)
    caption = "* some times are when the benchmark read the log line: the line had no monotonic_s"
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        caption=caption if read_times else None,
        caption_justify="left",
    )
    table.add_column("row")
    table.add_column("what is timed")
    for column in ("n", "p50 ms", "p95 ms", "min ms", "max ms"):
        table.add_column(column, justify="right")
    table.add_column("target")
    for result in results:
        samples = result.samples_s
        numbers = (
            [
                f"{value * 1000:.1f}"
                for value in (statistics.median(samples), _p95(samples), min(samples), max(samples))
            ]
            if samples
            else ["-"] * 4
        )
        target = result.row.target.describe() if result.row.target else ""
        if result.skipped is not None:
            target = f"[dim]skipped: {result.skipped}[/dim]"
        elif result.error is not None:
            target = f"[red]failed[/red] {target}"
        elif result.target_met is not None:
            target = f"{target} [green]met[/green]" if result.target_met else f"{target} [red]missed[/red]"
        key = f"{result.row.key}{' *' if result.read_times else ''}"
        table.add_row(key, result.row.title, str(len(samples)), *numbers, target)
    return table


def _step_text(step_s: float | None) -> str:
    return "-" if step_s is None else f"{step_s * 1000:.1f}"


def _breakdown_table(result: _Result) -> Table:
    """One trial per line, each step of the handover, then the medians."""
    table = Table(
        title=f"{result.row.key}, step by step (ms): each step from the end of the one before",
        title_justify="left",
        title_style="bold",
        caption=(
            "signal → old command gone (child_exited) → old node deleted (old daemon's 'stopped') → "
            "successor notified (new daemon's 'predecessor_gone') → 'elected' → 'child_started' → "
            "the command reads its clock"
        ),
        caption_justify="left",
    )
    table.add_column("trial", justify="right")
    for label, _, _ in _HANDOVER_STEPS:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    for trial, (steps, total) in enumerate(zip(result.breakdowns_s, result.samples_s, strict=False), 1):
        table.add_row(str(trial), *(_step_text(step) for step in steps), f"{total * 1000:.1f}")
    medians = _step_medians(result.breakdowns_s)
    table.add_row(
        "p50", *(_step_text(step) for step in medians), f"{statistics.median(result.samples_s) * 1000:.1f}"
    )
    return table


def _ratios(results: list[_Result]) -> list[dict[str, Any]]:
    """For each of :data:`_RATIOS` whose two rows have samples: both p50s, the ratio, the verdict."""
    by_key = {result.row.key: result for result in results}
    rows = []
    for ratio in _RATIOS:
        row, anchor = by_key.get(ratio.row), by_key.get(ratio.anchor)
        if row is None or anchor is None or not row.samples_s or not anchor.samples_s:
            continue
        row_ms = statistics.median(row.samples_s) * 1000
        anchor_ms = statistics.median(anchor.samples_s) * 1000
        value = row_ms / anchor_ms
        rows.append(
            {
                "row": ratio.row,
                "anchor": ratio.anchor,
                "p50_ms": round(row_ms, 2),
                "anchor_p50_ms": round(anchor_ms, 2),
                "ratio": round(value, 3),
                "target": ratio.limit,
                "target_met": None if ratio.limit is None else value <= ratio.limit,
            }
        )
    return rows


def _ratio_table(ratios: list[dict[str, Any]]) -> Table:
    table = Table(title="p50 against its anchor, same run", title_justify="left", title_style="bold")
    table.add_column("ratio")
    for column in ("p50 ms", "anchor p50 ms", "ratio"):
        table.add_column(column, justify="right")
    table.add_column("target")
    for ratio in ratios:
        target = ""
        if ratio["target"] is not None:
            verdict = "[green]met[/green]" if ratio["target_met"] else "[red]missed[/red]"
            target = f"≤ {ratio['target']:g}x {verdict}"
        table.add_row(
            f"{ratio['row']} p50 / {ratio['anchor']} p50",
            f"{ratio['p50_ms']:.1f}",
            f"{ratio['anchor_p50_ms']:.1f}",
            f"{ratio['ratio']:.2f}x",
            target,
        )
    return table


def _tls_comparison(results: list[_Result]) -> list[dict[str, Any]]:
    """For each row with a TLS twin that both have samples: p50 plain, p50 over TLS, difference (ms)."""
    by_key = {result.row.key: result for result in results}
    rows = []
    for key in _TLS_TWINS:
        plain, tls = by_key.get(key), by_key.get(key + _TLS)
        if plain is None or tls is None or not plain.samples_s or not tls.samples_s:
            continue
        plain_ms = statistics.median(plain.samples_s) * 1000
        tls_ms = statistics.median(tls.samples_s) * 1000
        rows.append(
            {
                "row": key,
                "p50_plain_ms": round(plain_ms, 1),
                "p50_tls_ms": round(tls_ms, 1),
                "difference_ms": round(tls_ms - plain_ms, 1),
                "n_plain": len(plain.samples_s),
                "n_tls": len(tls.samples_s),
            }
        )
    return rows


def _comparison_table(comparison: list[dict[str, Any]]) -> Table:
    table = Table(title="p50 without and with mutual TLS, same run", title_justify="left", title_style="bold")
    table.add_column("row")
    for column in ("n", "p50 plain ms", "p50 TLS ms", "TLS - plain ms"):
        table.add_column(column, justify="right")
    for row in comparison:
        table.add_row(
            row["row"],
            f"{row['n_plain']}/{row['n_tls']}",
            f"{row['p50_plain_ms']:.1f}",
            f"{row['p50_tls_ms']:.1f}",
            f"{row['difference_ms']:+.1f}",
        )
    return table


def _select(only: str | None, *, tls: bool = False) -> set[str]:
    """The keys of the rows ``--only`` selects (all without it; the ``-tls`` rows only with ``tls``);
    ValueError for a token that selects none."""
    rows = [key for key in ROWS if tls or not key.endswith(_TLS)]
    if not only:
        return set(rows)
    tokens = [token.strip() for token in only.split(",") if token.strip()]
    for token in tokens:
        if not any(_matches(key, token) for key in rows):
            hint = " (the -tls rows need --tls)" if any(_matches(key, token) for key in ROWS) else ""
            raise ValueError(f"{token!r} names no row{hint}; rows: {', '.join(rows)}")
    return {key for key in rows if any(_matches(key, token) for token in tokens)}


def _matches(key: str, token: str) -> bool:
    """Whether ``token`` selects the row ``key``.

    ``graceful/kazoo`` is selected by itself, ``graceful`` and ``kazoo``; ``daemon/cut-gap`` also by
    ``daemon/cut``; ``graceful/library-tls`` also by ``tls``.
    """
    return (
        key == token
        or token in key.split("/")
        or key.startswith((f"{token}/", f"{token}-"))
        or (token == _TLS[1:] and key.endswith(_TLS))
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/failover.py",
        description=(__doc__ or "").splitlines()[0],
        epilog=f"rows: {', '.join(ROWS)}",
    )
    parser.add_argument(
        "--trials", type=int, default=_DEFAULT_TRIALS, help=f"failovers per row (default {_DEFAULT_TRIALS})"
    )
    parser.add_argument(
        "--only", metavar="ROWS", help="comma-separated rows or groups, e.g. graceful,daemon/sigkill,kazoo"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results as JSON to FILE")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="also run the library and daemon rows over mutual TLS (rows *-tls), beside the plain ones",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=_DEFAULT_SESSION_TIMEOUT_S,
        metavar="SECONDS",
        help=f"session timeout T of every contender (default {_DEFAULT_SESSION_TIMEOUT_S})",
    )
    args = parser.parse_args(argv)
    try:
        args.rows = _select(args.only, tls=args.tls)
    except ValueError as error:
        parser.error(f"--only: {error}")
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    if not 2 * _TICK_TIME_MS / 1000 <= args.session_timeout <= 20 * _TICK_TIME_MS / 1000:
        parser.error("--session-timeout must be within ZooKeeper's 2 to 20 ticks: 0.4 to 4 seconds")
    return args


async def _run(args: argparse.Namespace, console: Console) -> tuple[list[_Result], dict[str, str]]:
    """Every selected row's results, and the versions of the servers (``zookeeper``, ``etcd``)."""
    # SIGTERM ends a run as Ctrl-C does: through every finally below, so nothing is left running.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    tls_directory = tempfile.TemporaryDirectory(prefix="bench-failover-tls-") if args.tls else None
    # The TLS port beside the plain one: mutual TLS, a client certificate from the test CA.
    tls_files = make_tls_files(tls_directory.name) if tls_directory is not None else None
    ensemble = ZooKeeperEnsemble(1, tick_time_ms=_TICK_TIME_MS, tls=tls_files, client_auth="need")
    etcd = EtcdServer(parent_death_prefix()) if "etcd/sigterm" in args.rows and etcd_installed() else None
    etcd_error: str | None = None
    try:
        console.print(f"starting ZooKeeper (tickTime {_TICK_TIME_MS} ms)...")
        await asyncio.to_thread(ensemble.start)
        srvr = ensemble.servers[0].four_letter("srvr")
        versions = {"zookeeper": srvr.splitlines()[0].removeprefix("Zookeeper version: ")}
        if etcd is not None:
            console.print("starting etcd...")
            try:
                # In this thread, not a to_thread worker: the kernel sends etcd its parent-death
                # SIGKILL when the thread that started it ends. Nothing else runs yet to be held up.
                etcd.start(_START_TIMEOUT_S)
                versions["etcd"] = etcd.version()
            except (EtcdStartError, OSError, ValueError) as error:
                # Only the etcd row fails: the others go on without it.
                etcd_error = f"etcd did not start: {error}"
                console.print(f"[red]etcd/sigterm failed:[/red] {etcd_error}")
                await asyncio.to_thread(etcd.close)
                etcd = None
        with tempfile.TemporaryDirectory(prefix="bench-failover-") as directory:
            bench = _Bench(ensemble, etcd, args.session_timeout, Path(directory), tls_files)
            # A scenario runs if any of its rows is selected, and then fills all of them.
            groups = {
                group: [(keys, s) for keys, s in planned if args.rows.intersection(keys)]
                for group, planned in _scenarios(bench).items()
            }
            chosen = args.rows.union(*(keys for planned in groups.values() for keys, _ in planned))
            results = {row.key: _Result(row) for row in _rows(args.session_timeout) if row.key in chosen}
            if "etcd/sigterm" in results and etcd is None:
                # Optional: without etcd the row is skipped, not failed.
                results["etcd/sigterm"].error = etcd_error
                results["etcd/sigterm"].skipped = None if etcd_error else "etcd not installed"
            try:
                for group, planned in groups.items():
                    if planned:
                        console.print(f"[bold]{group}[/bold]: {args.trials} trials of {len(planned)} series")
                        await _run_group(planned, results, args.trials, console)
            finally:
                await bench.close()
    finally:
        await asyncio.to_thread(ensemble.close)
        if etcd is not None:
            await asyncio.to_thread(etcd.close)
        if tls_directory is not None:
            tls_directory.cleanup()
    return list(results.values()), versions


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    console = Console(stderr=True)
    started = time.monotonic()
    try:
        results, versions = asyncio.run(_run(args, console))
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("interrupted; every process started here has been killed")
        return 130
    elapsed_s = time.monotonic() - started
    etcd = f", etcd {versions['etcd']}" if "etcd" in versions else ""
    title = (
        f"Failover, ZooKeeper {versions['zookeeper'].split('-')[0]} (tickTime {_TICK_TIME_MS} ms){etcd}, "
        f"T = {args.session_timeout:g} s, {args.trials} trials per row, "
        f"{elapsed_s:.0f} s on {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    output = Console()
    if not output.is_terminal:
        # Rich assumes 80 columns when writing to a file or pipe, too narrow for the table.
        output.width = _REPORT_WIDTH
    output.print(_table(results, title))
    for result in results:
        if result.breakdowns_s:
            output.print(_breakdown_table(result))
    ratios = _ratios(results)
    if ratios:
        output.print(_ratio_table(ratios))
    comparison = _tls_comparison(results)
    if comparison:
        output.print(_comparison_table(comparison))
    if args.json is not None:
        document = {
            "zookeeper_version": versions["zookeeper"],
            "etcd_version": versions.get("etcd"),
            "tick_time_ms": _TICK_TIME_MS,
            "session_timeout_s": args.session_timeout,
            "trials": args.trials,
            "elapsed_s": round(elapsed_s, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "tls": args.tls,
            "rows": [result.to_json() for result in results],
            "tls_comparison": comparison,
            "ratios": ratios,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    failed = any(result.error is not None or result.target_met is False for result in results)
    failed |= any(ratio["target_met"] is False for ratio in ratios)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
