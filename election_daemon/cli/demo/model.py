"""The ``make demo`` failover show: three daemons on a local ZooKeeper ensemble, leaders stopped and killed.

``python -m election_daemon.cli.demo`` starts a three-server ZooKeeper ensemble and three daemons
(``python -m election_daemon``), each with a small leader-only command that prints a line a
second. It then stops the leader a few times, either gracefully (SIGTERM) or by killing its
process group (SIGKILL), restarts it, and measures each failover from the fault to the next
``child_started``. A graceful stop hands over at once, because the daemon closes its session;
a killed leader is replaced when ZooKeeper expires its session, about a session timeout later.

On a terminal the run is a live view: the participants in queue order with the leader
highlighted, and the failovers so far. Otherwise it prints one line per failover and a
summary. The exit status is 1 if a failover misses its deadline, if a daemon dies unbidden,
or if the logs show two leader-only commands at once: a ``child_started`` while another
daemon's term is open (no ``revoked``/``child_exited`` yet).

The module has three parts. The model is :class:`Cluster`, fed by the daemons' JSON log lines
and by reading the election queue, with a :class:`~election_daemon.testing.SafetyCheck`. The views are
:class:`LiveView` and :class:`PlainView`. The scenario driver is :class:`Fleet` (the daemon
processes) and :class:`Scenario`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import itertools
import logging
import math
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO, TypeVar

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from election_daemon.errors import ConfigError, ElectionError, ZooKeeperError
from election_daemon.library._zk import ZooKeeper
from election_daemon.library.candidacy import Participant, read_queue
from election_daemon.testing import (
    DaemonEvent,
    SafetyCheck,
    ZooKeeperEnsemble,
    daemon_args,
    daemon_environment,
    parse_event,
    read_lines,
    signal_group,
    start_daemon,
)

__all__ = [
    "ELECTION_PATH",
    "PARTICIPANT_IDS",
    "ChildStart",
    "Cluster",
    "DemoConfig",
    "Failover",
    "FaultKind",
    "Fleet",
    "LiveView",
    "Member",
    "PlainView",
    "QueueObserver",
    "Row",
    "Scenario",
    "Summary",
    "View",
    "fault_plan",
    "main",
]

PARTICIPANT_IDS = ("alpha", "bravo", "charlie")
ELECTION_PATH = "/demo/leader"

# Prints a line a second while leading; its output passes through the daemon's stdout.
_LEADER_COMMAND = (
    "sh",
    "-c",
    'n=0; while :; do n=$((n+1)); echo "$ELECTION_ID leads, token $ELECTION_TOKEN: line $n"; sleep 1; done',
)

_TICK_TIME_MS = 200
# What the ensemble grants: ZooKeeper's default range of 2 to 20 ticks.
_MIN_SESSION_TIMEOUT_S = 2 * _TICK_TIME_MS / 1000
_MAX_SESSION_TIMEOUT_S = 20 * _TICK_TIME_MS / 1000
_MAX_FAULTS = 100

_POLL_S = 0.02
_QUEUE_POLL_S = 0.2
_REFRESH_S = 0.125
_ENSEMBLE_START_TIMEOUT_S = 30.0
_OBSERVER_CONNECT_TIMEOUT_S = 10.0
# Three Python interpreters starting on a loaded two-core machine.
_FIRST_LEADER_DEADLINE_S = 30.0
_REJOIN_DEADLINE_S = 20.0
_EXIT_DEADLINE_S = 10.0
_STOP_GRACE_S = 10.0
# After a daemon exits, its command and lifeline may hold the pipes a moment longer.
_PIPE_DRAIN_S = 2.0
# How long each leader works before the next fault: long enough to see it print.
_HOLD_S = (1.0, 2.0)
_STDERR_TAIL_LINES = 20
_SHOWN_FAILOVERS = 8
_PARTICIPANT_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("id", "left"),
    ("pid", "right"),
    ("state", "left"),
    ("token", "right"),
    ("node", "left"),
    ("waits on", "left"),
)

_EXIT_OK = 0
_EXIT_FAILED = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130

_T = TypeVar("_T")


# -- configuration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What the demo does: how many faults, the random seed, the daemons' session timeout."""

    faults: int = 4
    seed: int = 0
    session_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.faults <= _MAX_FAULTS:
            raise ConfigError("--faults", f"must be between 1 and {_MAX_FAULTS}, got {self.faults}")
        if not (
            math.isfinite(self.session_timeout_s)
            and _MIN_SESSION_TIMEOUT_S <= self.session_timeout_s <= _MAX_SESSION_TIMEOUT_S
        ):
            raise ConfigError(
                "--session-timeout",
                f"must be between {_MIN_SESSION_TIMEOUT_S:g} and {_MAX_SESSION_TIMEOUT_S:g} seconds, "
                f"got {self.session_timeout_s:g}",
            )

    @property
    def failover_deadline_s(self) -> float:
        """A killed leader waits out its session's expiry; the rest is slack for a loaded machine."""
        return 5.0 + 3.0 * self.session_timeout_s


def _parse_args(argv: Sequence[str] | None) -> DemoConfig:
    parser = argparse.ArgumentParser(
        prog="python -m election_daemon.cli.demo",
        description=(
            "Start a three-server ZooKeeper ensemble and three election daemons, then stop or kill "
            "the leader a few times and show each failover."
        ),
    )
    parser.add_argument("--faults", type=int, default=4, help="how many leaders to stop or kill (default 4)")
    parser.add_argument(
        "--seed", type=int, help="seed for the choice and timing of the faults (default: random)"
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="the daemons' ZooKeeper session timeout (default 2)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    return DemoConfig(faults=args.faults, seed=seed, session_timeout_s=args.session_timeout)


# -- the model: participants fed by log lines and the queue ------------------------------


class FaultKind(enum.Enum):
    """How the demo ends a leader."""

    TERM = "SIGTERM"
    KILL = "SIGKILL"

    @property
    def description(self) -> str:
        return "graceful stop" if self is FaultKind.TERM else "crash"


@dataclass(eq=False)
class Member:
    """One daemon process: an incarnation of a participant id (a restarted daemon is a new member)."""

    id: str
    pid: int
    state: str = "starting"
    node: str | None = None
    token: int | None = None
    child_pgid: int | None = None
    output: str = ""
    """The last line its leader-only command printed."""
    fault: FaultKind | None = None
    """How the demo ended it, set before the signal is sent; None while it is not meant to end."""
    ended: str | None = None
    """How its process ended ("killed (SIGKILL)", "exited 0"); None while it runs."""

    @property
    def alive(self) -> bool:
        return self.ended is None

    @property
    def leading(self) -> bool:
        return self.alive and self.state == "leading"


@dataclass(frozen=True, slots=True)
class ChildStart:
    """A ``child_started`` line: a leader-only command began under ``token``."""

    member: Member
    token: int | None
    monotonic_s: float


@dataclass(frozen=True, slots=True)
class Failover:
    """One fault and the leader change it caused."""

    number: int
    kind: FaultKind
    old_leader: str
    new_leader: str
    duration_s: float
    """From the fault to the new leader's ``child_started``."""
    token: int | None
    """The new term's fencing token."""

    def line(self, total: int) -> str:
        return (
            f"failover {self.number}/{total}: {self.kind.value} {self.old_leader} -> {self.new_leader} "
            f"in {self.duration_s:.3f} s, token {_token_text(self.token)}"
        )


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the participants table."""

    label: str
    pid: int | None
    state: str
    token: int | None
    """The term's token while leading, else the token its node would lead with."""
    node: str | None
    waits_on: str | None
    """The participant owning the node just before this one in the queue."""
    leader: bool
    gone: bool
    """Its process has ended; a killed daemon's node stays in the queue until its session expires."""


class Cluster:
    """The demo's picture of the election: its members, the queue in ZooKeeper, the failovers."""

    def __init__(self, safety: SafetyCheck[Member] | None = None) -> None:
        self.members: list[Member] = []
        self.queue: list[Participant] = []
        self.child_starts: list[ChildStart] = []
        self.failovers: list[Failover] = []
        self.safety: SafetyCheck[Member] = safety if safety is not None else SafetyCheck()
        self.unexpected_exits: list[str] = []

    def add(self, participant_id: str, pid: int) -> Member:
        member = Member(participant_id, pid)
        self.members.append(member)
        return member

    def record(self, member: Member, event: DaemonEvent) -> None:
        """Apply one of ``member``'s log lines; every line carries the daemon's current view."""
        if event.state is not None:
            member.state = event.state
        member.node = event.node
        member.token = event.token
        if event.name == "child_started":
            member.child_pgid = event.pgid
            start = ChildStart(member, event.token, event.at_s)
            self.child_starts.append(start)
            self.safety.child_started(member, member.id, event.token, event.pgid)
        elif event.name in ("revoked", "child_exited"):
            self.safety.term_ended(member)
            if event.name == "child_exited":
                member.child_pgid = None

    def output(self, member: Member, line: str) -> None:
        member.output = line

    def process_ended(self, member: Member, returncode: int) -> None:
        if returncode < 0:
            member.ended = f"killed ({signal.Signals(-returncode).name})"
        else:
            member.ended = f"exited {returncode}"
        self.safety.process_ended(member)
        # A daemon SIGTERMed before it set up its signal handlers dies of the signal: also fine.
        expected = member.fault is FaultKind.KILL or (
            member.fault is FaultKind.TERM and returncode in (0, -signal.SIGTERM)
        )
        if not expected:
            why = f"after {member.fault.value}" if member.fault is not None else "unbidden"
            self.unexpected_exits.append(f"{member.id} (pid {member.pid}) {member.ended} {why}")

    def problems(self) -> list[str]:
        """Everything that makes the run a failure so far."""
        return [*self.safety.violations, *self.unexpected_exits]

    def queued(self, member: Member) -> bool:
        """Whether the last read of the queue showed ``member``'s node."""
        return member.node is not None and any(p.node == member.node for p in self.queue)

    def leader(self) -> Member | None:
        """The member leading with its command running."""
        for member in self.members:
            if member.leading and member.child_pgid is not None:
                return member
        return None

    def child_start_since(self, since_s: float, *, other_than: Member) -> ChildStart | None:
        """The first command started at or after ``since_s`` by anyone but ``other_than``."""
        for start in self.child_starts:
            if start.monotonic_s >= since_s and start.member is not other_than:
                return start
        return None

    def rows(self) -> list[Row]:
        """The participants in queue order (the leader first), then members not in the queue."""
        owners = {member.node: member for member in self.members if member.node is not None}
        rows: list[Row] = []
        shown: set[Member] = set()
        previous: str | None = None
        for participant in self.queue:
            member = owners.get(participant.node)
            label = member.id if member is not None else (participant.id or "?")
            rows.append(self._row(member, label, participant.node, participant.token, previous))
            previous = label
            if member is not None:
                shown.add(member)
        for member in self.members:
            if member.alive and member not in shown:
                rows.append(self._row(member, member.id, member.node, member.token, None))
        return rows

    @staticmethod
    def _row(
        member: Member | None, label: str, node: str | None, token: int | None, waits_on: str | None
    ) -> Row:
        if member is None:
            return Row(label, None, "?", token, node, waits_on, leader=False, gone=False)
        return Row(
            label,
            member.pid,
            member.state if member.ended is None else member.ended,
            member.token if member.token is not None else token,
            node,
            waits_on,
            leader=member.leading,
            gone=not member.alive,
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """How the run went."""

    failovers: tuple[Failover, ...]
    problems: tuple[str, ...]
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.interrupted

    @property
    def tokens_increasing(self) -> bool:
        tokens = [f.token for f in self.failovers if f.token is not None]
        return len(tokens) == len(self.failovers) and all(a < b for a, b in itertools.pairwise(tokens))

    def line(self) -> str:
        parts = [_count(len(self.failovers), "failover")]
        for kind in FaultKind:
            durations = [f.duration_s for f in self.failovers if f.kind is kind]
            if durations:
                low, high = min(durations), max(durations)
                spread = f"{low:.3f} s" if len(durations) == 1 else f"{low:.3f}-{high:.3f} s"
                parts.append(f"{kind.value} ({kind.description}) x{len(durations)}: {spread}")
        if self.failovers:
            parts.append("tokens strictly increasing" if self.tokens_increasing else "TOKENS NOT INCREASING")
        if self.problems:
            parts.append(f"FAILED: {_count(len(self.problems), 'problem')}")
        else:
            parts.append("no overlapping terms")
        if self.interrupted:
            parts.append("interrupted")
        return "summary: " + "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _token_text(token: int | None) -> str:
    return "?" if token is None else str(token)


def _short_node(node: str | None) -> str:
    if node is None:
        return ""
    # _c_<guid>-<sequence>: the sequence orders the queue.
    name = node.rsplit("/", 1)[-1]
    return f"…{name[-11:]}" if len(name) > 12 else name


# -- the views -------------------------------------------------------------------------


class View(Protocol):
    """What the scenario tells whoever watches."""

    def open(self, title: str, details: Sequence[str]) -> None: ...

    def status(self, text: str, *, since_s: float | None = None, until_s: float | None = None) -> None:
        """What happens now; ``since_s``/``until_s`` (monotonic) add a running clock."""

    def failover(self, failover: Failover, total: int) -> None: ...

    async def close(self) -> None:
        """Stop redrawing, leaving the last picture."""

    def summary(self, summary: Summary) -> None: ...


class PlainView:
    """For pipes and CI logs: a header, one line per failover, a summary."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def open(self, title: str, details: Sequence[str]) -> None:
        self._print(f"{title}: {'; '.join(details)}")

    def status(self, text: str, *, since_s: float | None = None, until_s: float | None = None) -> None:
        """Progress is for the live view; a log gets the results."""

    def failover(self, failover: Failover, total: int) -> None:
        self._print(failover.line(total))

    async def close(self) -> None:
        """Nothing to stop: every line is out already."""

    def summary(self, summary: Summary) -> None:
        self._print(summary.line())


class LiveView:
    """For a terminal: the participants, the failovers and what happens now, redrawn in place."""

    def __init__(self, cluster: Cluster, console: Console, total_faults: int) -> None:
        self._cluster = cluster
        self._console = console
        self._total = total_faults
        self._title = Text()
        self._status = ""
        self._since_s: float | None = None
        self._until_s: float | None = None
        self._live: Live | None = None
        self._refresher: asyncio.Task[None] | None = None

    def open(self, title: str, details: Sequence[str]) -> None:
        self._title = Text.assemble((title, "bold"), *((f"\n{detail}", "dim") for detail in details))
        # Redrawn from the event loop rather than Live's thread: the model changes on the loop.
        self._live = Live(self._render(), console=self._console, auto_refresh=False)
        self._live.start()
        self._refresher = asyncio.ensure_future(self._refresh())

    def status(self, text: str, *, since_s: float | None = None, until_s: float | None = None) -> None:
        self._status = text
        self._since_s = since_s
        self._until_s = until_s

    def failover(self, failover: Failover, total: int) -> None:
        """The failovers table shows it at the next redraw."""

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        self._status = ""
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()

    def summary(self, summary: Summary) -> None:
        self._console.print(Text(summary.line(), style="bold green" if summary.ok else "bold red"))

    async def _refresh(self) -> None:
        assert self._live is not None
        while True:
            self._live.update(self._render(), refresh=True)
            await asyncio.sleep(_REFRESH_S)

    def _render(self) -> RenderableType:
        parts: list[RenderableType] = [self._title, self._participants()]
        output = self._leader_output()
        if output is not None:
            parts.append(output)
        if self._cluster.failovers:
            parts.append(self._failovers())
        if self._status:
            text = self._status
            now = time.monotonic()
            if self._since_s is not None:
                text += f" ({now - self._since_s:.1f} s)"
            if self._until_s is not None:
                text += f" in {max(0.0, self._until_s - now):.1f} s"
            parts.append(Spinner("dots", text=Text(text, style="cyan")))
        return Group(*parts)

    def _participants(self) -> Table:
        table = Table(title="participants, in queue order", title_justify="left", box=box.SIMPLE_HEAD)
        for name, justify in _PARTICIPANT_COLUMNS:
            table.add_column(name, justify=justify, no_wrap=True)
        for row in self._cluster.rows():
            table.add_row(
                f"★ {row.label}" if row.leader else row.label,
                "" if row.pid is None else str(row.pid),
                row.state,
                "" if row.token is None else str(row.token),
                _short_node(row.node),
                row.waits_on or "",
                style="bold green" if row.leader else ("dim" if row.gone else ""),
            )
        return table

    def _leader_output(self) -> Text | None:
        leader = self._cluster.leader()
        if leader is None or not leader.output:
            return None
        return Text.assemble(
            f"{leader.id}'s leader-only command says: ", (leader.output, "green"), no_wrap=True
        )

    def _failovers(self) -> Table:
        failovers = self._cluster.failovers
        earlier = len(failovers) - _SHOWN_FAILOVERS
        title = f"failovers ({earlier} earlier not shown)" if earlier > 0 else "failovers"
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("#", justify="right")
        table.add_column("fault")
        table.add_column("leader change")
        table.add_column("duration", justify="right")
        table.add_column("new token", justify="right")
        for f in failovers[-_SHOWN_FAILOVERS:]:
            table.add_row(
                f"{f.number}/{self._total}",
                f"{f.kind.value} ({f.kind.description})",
                f"{f.old_leader} → {f.new_leader}",
                Text(f"{f.duration_s:.3f} s", style="green" if f.kind is FaultKind.TERM else "yellow"),
                _token_text(f.token),
            )
        return table


# -- the scenario driver -----------------------------------------------------------------


class _DemoFailedError(ElectionError):
    """The scenario cannot go on: a deadline passed or the model reports a problem."""


@dataclass(eq=False)
class _Daemon:
    """A daemon process, the tasks reading its pipes, and the task that sees it end."""

    member: Member
    stderr_tail: deque[str]
    readers: list[asyncio.Task[None]]
    watcher: asyncio.Task[None]


class Fleet:
    """The daemon processes: started alike, their stdout read into the :class:`Cluster`.

    Each daemon runs in a session of its own, so that a terminal's Ctrl-C reaches only the demo,
    which then stops them itself, and so that one SIGKILL reaches its whole process group.
    """

    def __init__(self, hosts: str, session_timeout_s: float, cluster: Cluster) -> None:
        self._cluster = cluster
        self._args = daemon_args(
            hosts,
            ELECTION_PATH,
            session_timeout_s=session_timeout_s,
            options=("--log-format", "json"),
        )
        self._env = daemon_environment({"PYTHONUNBUFFERED": "1"})
        self._daemons: list[_Daemon] = []

    async def start(self, participant_id: str) -> Member:
        # Dies with the demo (the kernel SIGKILLs it; its lifeline then kills its command).
        process = await start_daemon(
            [*self._args, "--id", participant_id, "--", *_LEADER_COMMAND], env=self._env
        )
        member = self._cluster.add(participant_id, process.pid)
        stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        assert process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.ensure_future(self._read_stdout(member, process.stdout)),
            asyncio.ensure_future(self._read_stderr(stderr_tail, process.stderr)),
        ]
        watcher = asyncio.ensure_future(self._watch(member, process, readers))
        self._daemons.append(_Daemon(member, stderr_tail, readers, watcher))
        return member

    def fault(self, member: Member, kind: FaultKind) -> float:
        """Stop (SIGTERM) or kill (SIGKILL to its process group) ``member``; returns the fault's time."""
        member.fault = kind
        at = time.monotonic()
        if kind is FaultKind.KILL:
            signal_group(member.pid, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, signal.SIGTERM)
        return at

    async def stop(self) -> None:
        """Stop every daemon still running: SIGTERM, followers first; SIGKILL after the grace."""
        running = [d for d in self._daemons if d.member.alive]
        followers = [d for d in running if not d.member.leading]
        leaders = [d for d in running if d.member.leading]
        # Followers first, so that stopping the leader does not hand over to a stopping daemon.
        for batch in (followers, leaders):
            for daemon in batch:
                self.fault(daemon.member, FaultKind.TERM)
            await _wait_all(batch, _STOP_GRACE_S)
        for daemon in self._daemons:
            if daemon.member.alive:
                signal_group(daemon.member.pid, signal.SIGKILL)
        await _wait_all(self._daemons, _EXIT_DEADLINE_S)
        tasks = [task for d in self._daemons for task in (*d.readers, d.watcher)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stderr_tails(self) -> Iterator[tuple[Member, list[str]]]:
        for daemon in self._daemons:
            if daemon.stderr_tail:
                yield daemon.member, list(daemon.stderr_tail)

    async def _read_stdout(self, member: Member, stream: asyncio.StreamReader) -> None:
        async for line in read_lines(stream):
            event = parse_event(line, time.monotonic())
            if event is not None:
                self._cluster.record(member, event)
            elif line:
                self._cluster.output(member, line)

    @staticmethod
    async def _read_stderr(tail: deque[str], stream: asyncio.StreamReader) -> None:
        async for line in read_lines(stream):
            tail.append(line)

    async def _watch(
        self, member: Member, process: asyncio.subprocess.Process, readers: list[asyncio.Task[None]]
    ) -> None:
        returncode = await process.wait()
        # The last lines (revoked, child_exited) come before the exit; the pipes close once the
        # daemon's command and lifeline have gone too.
        await asyncio.wait(readers, timeout=_PIPE_DRAIN_S)
        self._cluster.process_ended(member, returncode)


async def _wait_all(daemons: Sequence[_Daemon], timeout_s: float) -> None:
    watchers = [d.watcher for d in daemons if not d.watcher.done()]
    if watchers:
        await asyncio.wait(watchers, timeout=timeout_s)


class QueueObserver:
    """Reads the election queue into the cluster model a few times a second, without joining it."""

    def __init__(self, hosts: str, path: str, cluster: Cluster, *, session_timeout_s: float) -> None:
        self._zk = ZooKeeper.create(hosts, chroot=None, session_timeout_s=session_timeout_s)
        self._path = path
        self._cluster = cluster
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> QueueObserver:
        await self._zk.start(connect_timeout_s=_OBSERVER_CONNECT_TIMEOUT_S)
        self._task = asyncio.ensure_future(self._poll())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._zk.close()

    async def _poll(self) -> None:
        while True:
            # A failed read keeps the last picture: the queue view is a nicety, not a verdict.
            with contextlib.suppress(ZooKeeperError):
                self._cluster.queue = await read_queue(self._zk, self._path)
            await asyncio.sleep(_QUEUE_POLL_S)


def fault_plan(count: int, rng: random.Random) -> list[FaultKind]:
    """As many graceful stops as kills (one more of either for an odd count), shuffled."""
    kinds = list(FaultKind)
    rng.shuffle(kinds)
    plan = (kinds * count)[:count]
    rng.shuffle(plan)
    return plan


class Scenario:
    """The show: start three daemons, then stop or kill the leader ``faults`` times, restarting it."""

    def __init__(self, config: DemoConfig, fleet: Fleet, cluster: Cluster, view: View) -> None:
        self._config = config
        self._fleet = fleet
        self._cluster = cluster
        self._view = view
        self._rng = random.Random(config.seed)

    async def run(self) -> None:
        self._view.status(f"starting daemons {', '.join(PARTICIPANT_IDS)}")
        for participant_id in PARTICIPANT_IDS:
            await self._fleet.start(participant_id)
        leader = await self._until(self._cluster.leader, _FIRST_LEADER_DEADLINE_S, "a first leader")
        await self._until(self._all_joined, _REJOIN_DEADLINE_S, "every daemon to join the election")
        for number, kind in enumerate(fault_plan(self._config.faults, self._rng), start=1):
            await self._hold(f"{leader.id} leads; next: {kind.value} ({kind.description})")
            leader = await self._failover(number, kind, leader)

    async def _failover(self, number: int, kind: FaultKind, leader: Member) -> Member:
        at = self._fleet.fault(leader, kind)
        if kind is FaultKind.TERM:
            waiting = "it hands over as it closes its session"
        else:
            waiting = "its node stays until its session expires"
        self._view.status(f"{kind.value} sent to {leader.id}: {waiting}", since_s=at)
        start = await self._until(
            lambda: self._cluster.child_start_since(at, other_than=leader),
            self._config.failover_deadline_s,
            f"a new leader after {kind.value} of {leader.id}",
        )
        failover = Failover(number, kind, leader.id, start.member.id, start.monotonic_s - at, start.token)
        self._cluster.failovers.append(failover)
        self._view.failover(failover, self._config.faults)
        await self._until(lambda: not leader.alive or None, _EXIT_DEADLINE_S, f"{leader.id} to exit")
        self._view.status(f"restarting {leader.id}")
        rejoined = await self._fleet.start(leader.id)
        await self._until(
            lambda: (rejoined.state == "following" and self._cluster.queued(rejoined)) or None,
            _REJOIN_DEADLINE_S,
            f"{leader.id} to rejoin",
        )
        return start.member

    def _all_joined(self) -> bool | None:
        live = [m for m in self._cluster.members if m.alive]
        return all(m.state in ("following", "leading") and self._cluster.queued(m) for m in live) or None

    async def _hold(self, text: str) -> None:
        seconds = self._rng.uniform(*_HOLD_S)
        end = time.monotonic() + seconds
        self._view.status(text, until_s=end)
        await self._until(lambda: time.monotonic() >= end or None, seconds + 1.0, "the pause")

    async def _until(self, probe: Callable[[], _T | None], timeout_s: float, what: str) -> _T:
        """Poll ``probe`` until it gives a value; fail on a deadline or on any problem the model sees."""
        deadline = time.monotonic() + timeout_s
        while True:
            problems = self._cluster.problems()
            if problems:
                raise _DemoFailedError(problems[0])
            value = probe()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise _DemoFailedError(f"no {what} within {timeout_s:g} s")
            await asyncio.sleep(_POLL_S)


# -- the program ------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"election-daemon demo: {message}", file=sys.stderr, flush=True)


async def _run(config: DemoConfig, hosts: str, console: Console, interactive: bool) -> int:
    cluster = Cluster()
    view: View = LiveView(cluster, console, config.faults) if interactive else PlainView(sys.stdout)
    fleet = Fleet(hosts, config.session_timeout_s, cluster)
    loop = asyncio.get_running_loop()
    failure: str | None = None
    interrupted = False

    async def stop_daemons() -> None:
        with _spinner(console, interactive, "stopping the daemons"):
            await fleet.stop()

    def restore_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    # Unwound in reverse: the observer goes, the view freezes, the daemons stop, signals reset.
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(restore_signals)
        stack.push_async_callback(stop_daemons)
        view.open(
            "election-daemon demo",
            [
                f"{len(PARTICIPANT_IDS)} daemons on a three-server ZooKeeper ensemble at {hosts}",
                f"path {ELECTION_PATH}, session timeout {config.session_timeout_s:g} s, "
                f"{_count(config.faults, 'fault')}, seed {config.seed}",
            ],
        )
        stack.push_async_callback(view.close)
        await stack.enter_async_context(
            QueueObserver(hosts, ELECTION_PATH, cluster, session_timeout_s=config.session_timeout_s)
        )
        task = asyncio.ensure_future(Scenario(config, fleet, cluster, view).run())
        # Ctrl-C and SIGTERM end the scenario, never the clean-up.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            interrupted = True
        except _DemoFailedError as e:
            failure = str(e)
    problems = cluster.problems()
    if failure is not None and failure not in problems:
        problems.insert(0, failure)
    view.summary(Summary(tuple(cluster.failovers), tuple(problems), interrupted))
    for problem in problems:
        _error(f"FAILED: {problem}")
    if problems:
        for member, lines in fleet.stderr_tails():
            _error(f"stderr of {member.id} (pid {member.pid}):\n  " + "\n  ".join(lines))
        return _EXIT_FAILED
    return _EXIT_INTERRUPTED if interrupted else _EXIT_OK


@contextlib.contextmanager
def _spinner(console: Console, interactive: bool, what: str) -> Iterator[None]:
    if interactive:
        with console.status(what):
            yield
    else:
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; the exit status is 0 if every failover happened in time and safely."""
    try:
        config = _parse_args(argv)
    except ConfigError as e:
        _error(f"error: {e}")
        return _EXIT_USAGE
    # aiozk logs connection aborts as warnings through the root logger, which would print them
    # over the live view; the demo reports what matters itself.
    logging.getLogger("aiozk").setLevel(logging.CRITICAL)
    interactive = sys.stdout.isatty()
    console = Console()
    ensemble: ZooKeeperEnsemble | None = None
    try:
        ensemble = ZooKeeperEnsemble(3, tick_time_ms=_TICK_TIME_MS, start_timeout_s=_ENSEMBLE_START_TIMEOUT_S)
        with _spinner(console, interactive, "starting a three-server ZooKeeper ensemble"):
            ensemble.start()
        return asyncio.run(_run(config, ensemble.hosts, console, interactive))
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED
    except ElectionError as e:
        _error(f"FAILED: {e}")
        return _EXIT_FAILED
    finally:
        if ensemble is not None:
            ensemble.close()


if __name__ == "__main__":
    raise SystemExit(main())
