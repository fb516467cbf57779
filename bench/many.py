"""Many elections on one shared aiozk client, against the pipelined floor measured in the same run.

Starts one ZooKeeper server (tickTime 200 ms) and, in this process, one ``aiozk.ZKClient`` per
measurement that every election of the measurement shares (``Election(None, path, client=zk)``),
each election on a path of its own (``/bench/many/<run>/e<i>``, created before the clock starts,
so that a join is a join and not the creation of its path). Rows (T = 2 s unless
``--session-timeout``):

- ``floor/N``: the pipelined floor, N ephemeral-sequential creates and N getChildren on one
  aiozk client, all sent at once (``asyncio.gather``): the time until all are answered. The
  anchor of ``elections/N``, measured just before it, beside the same CPU burners.
- ``elections/N``: N elections started at once (a gather of ``start()``) → every one LEADING
  (heard through ``add_listener``); then they hold for ``--hold`` seconds while revocations and
  session suspensions are counted (targets: no revocation; for 10,000 beside one burner, all
  leading within 1.5x the floor); requests per join (``Session.for_client(zk).zk.requests_sent``
  less the session's own ``Sync`` probes, over N; target at most 3), by kind; then a gather of
  ``stop()``, timed.
- ``failover/stop`` and ``failover/resign``: a leader and one follower on one path, each with
  its own client; the leader stops (or resigns) and the requests of both clients are counted
  from then until the follower's ``elected`` edge (target for ``stop``: at most 3).
- ``one-path/N``: N elections on ONE path and one client: the time until all have joined, and
  the child names every listing returned (counted exactly, see ``_Listings``).

``--burners K,...`` (default ``0,1``): K processes spinning a CPU (``python -c "while True:
pass"``) from before the floor to the end of its elections row. Every wait is bounded
(``--deadline`` for the joins; stops and client closes have their own bounds), so a run in
which leadership collapses ends, says so in its row, and exits 1.

Usage: ``python bench/many.py [--sizes 1000,10000,30000] [--burners 0,1] [--hold 20]
[--rounds R] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiozk
from aiozk import protocol
from rich.console import Console
from rich.table import Table

from election_daemon import Election, ElectionState, Transition
from election_daemon._processes import parent_death_prefix
from election_daemon.library.events import Event
from election_daemon.library.session import Session, SessionChange, SessionState
from election_daemon.testing import ZooKeeperEnsemble

__all__ = ["main"]

_TICK_TIME_MS = 200
_DEFAULT_SESSION_TIMEOUT_S = 2.0
_DEFAULT_SIZES = (1000, 10000)
_DEFAULT_BURNERS = (0, 1)
_DEFAULT_HOLD_S = 20.0
_DEFAULT_DEADLINE_S = 120.0
_DEFAULT_ONE_PATH = 1000
_DEFAULT_FAILOVERS = 5
_CONNECT_TIMEOUT_S = 30.0
_CLOSE_TIMEOUT_S = 10.0
_SETUP_TIMEOUT_S = 120.0
_SETUP_BATCH = 1000
_LAG_INTERVAL_S = 0.05
_BURNER_WARMUP_S = 0.5
_REPORT_WIDTH = 160
_RATIO_TARGET = 1.5
_RATIO_TARGET_SIZE = 10000
_RATIO_TARGET_BURNERS = 1
_REQUESTS_PER_JOIN_TARGET = 3.0
_REQUESTS_PER_FAILOVER_TARGET = 3.0
# The session's own liveness probes: one client's, not any join's.
_PROBE_KIND = "Sync"
_BURNER = "while True: pass"


def _stop_timeout_s(n: int) -> float:
    # A graceful stop is one multi per election, pipelined: a few seconds for 30,000 on loopback.
    return 30.0 + n / 500


# ---------------------------------------------------------------------------------------------
# Measuring instruments


class _Listings:
    """Child names in every listing answered on one aiozk session, counted exactly.

    The adapter sends each request through the aiozk session's ``send``; this wraps that one
    method on the session object the benchmark owns (an instance attribute: nothing in the
    library or in aiozk is changed) and adds up the length of every GetChildren answer.
    """

    def __init__(self, session: Any) -> None:
        self.names = 0
        self.listings = 0
        send = session.send

        async def counting_send(request: protocol.Request[Any]) -> Any:
            response = await send(request)
            children = getattr(response, "children", None)
            if isinstance(children, list):
                self.listings += 1
                self.names += len(children)
            return response

        # An instance attribute shadows the method for this session only.
        setattr(session, "send", counting_send)  # noqa: B010


class _LagMonitor:
    """How late the event loop runs a timer: time the loop spends on anything but waiting."""

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def take(self) -> float:
        """The worst lateness since the last call."""
        worst, self.worst_s = self.worst_s, 0.0
        return worst

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(_LAG_INTERVAL_S)
            self.worst_s = max(self.worst_s, time.monotonic() - before - _LAG_INTERVAL_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _LogCounter(logging.Handler):
    """Counts the library's warnings and errors; shows the first few, so a collapse cannot flood."""

    _SHOWN = 5

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console
        self.counts: collections.Counter[str] = collections.Counter()
        self.messages: collections.Counter[str] = collections.Counter()
        """By level, logger and the message's first words (addresses and ids vary)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        head = " ".join(record.getMessage().split()[:3])
        self.messages[f"{record.levelname} {record.name}: {head}"] += 1
        if sum(self.counts.values()) <= self._SHOWN:
            self.console.print(f"[yellow]log {record.levelname}:[/yellow] {record.getMessage()}")


@dataclass
class _Clocks:
    """Wall time, this process's CPU time and the ZooKeeper server's, read together."""

    wall_s: float
    cpu_s: float
    server_cpu_s: float

    @classmethod
    def read(cls, server_pid: int | None) -> _Clocks:
        return cls(time.monotonic(), time.process_time(), _process_cpu_s(server_pid))

    def since(self, start: _Clocks) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s - start.wall_s, 3),
            "cpu_s": round(self.cpu_s - start.cpu_s, 3),
            "server_cpu_s": round(self.server_cpu_s - start.server_cpu_s, 3),
        }


def _process_cpu_s(pid: int | None) -> float:
    """User plus system CPU time of process ``pid`` (every thread), from /proc; 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            fields = stat_file.read().rpartition(b")")[2].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of proc(5), counted here from field 3 (the state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_mb(key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (the peak so far) of this process, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _difference(after: collections.Counter[str], before: collections.Counter[str]) -> dict[str, int]:
    return dict(sorted((after - before).items()))


def _per(counts: dict[str, int], n: int) -> dict[str, float]:
    return {kind: round(count / n, 3) for kind, count in counts.items()}


def _joins(counts: dict[str, int]) -> int:
    return sum(count for kind, count in counts.items() if kind != _PROBE_KIND)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class _Row:
    """One measured line: its kind, its configuration, and what each round found."""

    key: str
    size: int
    burners: int
    rounds: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def median(self, name: str) -> float | None:
        values = [r[name] for r in self.rounds if isinstance(r.get(name), int | float)]
        return statistics.median(values) if values else None


class _Bench:
    def __init__(self, ensemble: ZooKeeperEnsemble, args: argparse.Namespace, console: Console) -> None:
        self.address = ensemble.servers[0].address
        self.server_pid = ensemble.servers[0].pid
        self.four_letter = ensemble.servers[0].four_letter
        self.args = args
        self.console = console
        self.lag = _LagMonitor()
        self._runs = 0

    def clocks(self) -> _Clocks:
        return _Clocks.read(self.server_pid)

    def prefix(self, what: str) -> str:
        self._runs += 1
        return f"/bench/many/{self._runs:03d}-{what}"

    async def client(self, *, count_listings: bool = False) -> tuple[aiozk.ZKClient, _Listings | None]:
        client = self.unstarted_client()
        await self.start_client(client)
        return client, _Listings(client.session) if count_listings else None

    def unstarted_client(self) -> aiozk.ZKClient:
        return aiozk.ZKClient(self.address, session_timeout=self.args.session_timeout)

    @staticmethod
    async def start_client(client: aiozk.ZKClient) -> None:
        await asyncio.wait_for(client.start(), _CONNECT_TIMEOUT_S)

    async def make_paths(self, prefix: str, n: int) -> list[str]:
        """Persistent paths ``prefix/e<i>``, created before any clock starts."""
        client, _ = await self.client()
        try:
            async with asyncio.timeout(_SETUP_TIMEOUT_S):
                await client.ensure_path(prefix)
                paths = [f"{prefix}/e{i}" for i in range(n)]
                # In batches: 30,000 creates sent at once hold the event loop for longer than
                # T, the client misses its pings, and aiozk's retries then find NodeExists.
                for first in range(0, n, _SETUP_BATCH):
                    await asyncio.gather(
                        *(_create(client, path) for path in paths[first : first + _SETUP_BATCH])
                    )
        finally:
            await _close(client)
        return paths

    # -- rows -------------------------------------------------------------------------------

    async def floor(self, n: int) -> dict[str, Any]:
        paths = await self.make_paths(self.prefix(f"floor-{n}"), n)
        client, _ = await self.client()
        try:
            gc.collect()
            start = self.clocks()
            self.lag.take()
            async with asyncio.timeout(self.args.deadline):
                await asyncio.gather(
                    *(client.create(f"{path}/n-", ephemeral=True, sequential=True) for path in paths),
                    *(client.get_children(path) for path in paths),
                )
            result: dict[str, Any] = {
                **self.clocks().since(start),
                "loop_lag_max_s": round(self.lag.take(), 3),
            }
            result["time_s"] = result["wall_s"]
            return result
        finally:
            await _close(client)

    async def elections(self, n: int) -> dict[str, Any]:
        paths = await self.make_paths(self.prefix(f"elections-{n}"), n)
        # The elections are made before their client connects: making 10,000 holds the event
        # loop for a second or more, which would starve a connected client's pings and cost
        # its session before the clock starts.
        client = self.unstarted_client()
        listings = _Listings(client.session)
        elections = [Election(None, path, client=client, identity=f"e{i}") for i, path in enumerate(paths)]
        tracker = _Tracker(n)
        for i, election in enumerate(elections):
            election.add_listener(tracker.listener(i))
        await self.start_client(client)
        session = Session.for_client(client)
        session.add_listener(tracker.on_session)
        result: dict[str, Any] = {"n": n}
        try:
            await self._join_and_hold(elections, session, tracker, listings, result)
        finally:
            edges_before_stop = len(tracker.session_edges)
            result["stop"] = await self._stop(elections, session, client)
            result["stop"]["session_edges"] = tracker.edges_since(edges_before_stop)
            session.remove_listener(tracker.on_session)
            result["session_edges"] = tracker.session_edges
            result["rss_peak_mb"] = round(_memory_mb("VmHWM"), 1)
        return result

    async def _join_and_hold(
        self,
        elections: list[Election],
        session: Session,
        tracker: _Tracker,
        listings: _Listings | None,
        result: dict[str, Any],
    ) -> None:
        n = len(elections)
        counts = session.zk.requests_sent
        before = collections.Counter(counts)
        gc.collect()
        start = self.clocks()
        self.lag.take()
        tracker.started_s = start.wall_s
        starting = asyncio.gather(*(_timed(e.start(), tracker.joined_at, i) for i, e in enumerate(elections)))
        joined: _Clocks | None = None
        try:
            async with asyncio.timeout(self.args.deadline):
                await starting
                joined = self.clocks()
                await tracker.all_leading.wait()
        except TimeoutError:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
        except BaseException:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            raise
        leading = self.clocks()
        at_leading = collections.Counter(counts)
        result["rss_leading_mb"] = round(_memory_mb("VmRSS"), 1)
        result["join"] = {
            "joined_s": None if joined is None else round(joined.wall_s - start.wall_s, 3),
            "first_elected_s": tracker.elected_quantile(0.0),
            "p50_elected_s": tracker.elected_quantile(0.5),
            "p90_elected_s": tracker.elected_quantile(0.9),
            **leading.since(start),
            "loop_lag_max_s": round(self.lag.take(), 3),
            "requests": _difference(at_leading, before),
            "child_names": listings.names if listings is not None else None,
        }
        result["leading"] = len(tracker.leading)
        result["revocations_join"] = tracker.revocations
        result["suspensions_join"] = tracker.suspensions
        result["join"]["session_edges"] = tracker.edges_since(0)
        edges_at_leading = len(tracker.session_edges)
        if not tracker.all_leading.is_set():
            result["collapsed"] = (
                f"{len(tracker.leading)} of {n} leading after {self.args.deadline:g} s "
                f"({tracker.revocations} revocations, {tracker.suspensions} suspensions)"
            )
            self.console.print(f"[red]elections/{n}: {result['collapsed']}[/red]")
            result["requests"] = _difference(collections.Counter(counts), before)
            return
        result["time_s"] = result["join"]["wall_s"]
        # Hold: does leadership stay put with nothing happening?
        revoked, suspended = tracker.revocations, tracker.suspensions
        hold_start = self.clocks()
        settled_s = await _settle(counts, self.args.hold)
        after = collections.Counter(counts)
        result["hold"] = {
            **self.clocks().since(hold_start),
            "revocations": tracker.revocations - revoked,
            "suspensions": tracker.suspensions - suspended,
            "leading_at_end": len(tracker.leading),
            "loop_lag_max_s": round(self.lag.take(), 3),
            "requests": _difference(after, at_leading),
            "server_watches": self._watches(),
            "session_edges": tracker.edges_since(edges_at_leading),
            # Leadership is declared before the term is recorded: the joins' work goes on.
            "settled_s": None
            if settled_s is None
            else round(hold_start.wall_s - start.wall_s + settled_s, 3),
        }
        requests = _difference(after, before)
        result["requests"] = requests
        result["requests_per_join"] = round(_joins(requests) / n, 3)
        result["child_names_per_join"] = None if listings is None else round(listings.names / n, 2)

    async def _stop(
        self, elections: list[Election], session: Session, client: aiozk.ZKClient
    ) -> dict[str, Any]:
        counts = session.zk.requests_sent
        before = collections.Counter(counts)
        start = self.clocks()
        stopped = asyncio.gather(*(e.stop() for e in elections), return_exceptions=True)
        timed_out = False
        try:
            async with asyncio.timeout(_stop_timeout_s(len(elections))):
                outcomes = await stopped
        except TimeoutError:
            timed_out = True
            outcomes = []
        failures = sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
        result = {
            **self.clocks().since(start),
            "timed_out": timed_out,
            "failures": failures,
            "requests": _difference(collections.Counter(counts), before),
        }
        result["close_s"] = await _close(client)
        return result

    def _watches(self) -> int | None:
        """The server's own count of watches (``wchs``: "Total watches:N")."""
        try:
            answer = self.four_letter("wchs")
        except OSError:
            return None
        total = answer.rpartition("Total watches:")[2].strip()
        return int(total) if total.isdigit() else None

    async def failover(self, *, resign: bool, trials: int) -> list[dict[str, Any]]:
        """Leader after leader on one path, each with its own client: requests from the stop or
        resign until the follower's elected edge, both clients, by kind."""
        path = f"{self.prefix('failover-resign' if resign else 'failover-stop')}/election"
        address, timeout_s = self.address, self.args.session_timeout
        samples: list[dict[str, Any]] = []
        live: list[Election] = []

        async def join(name: str) -> Election:
            election = Election(address, path, identity=name, session_timeout_s=timeout_s)
            live.append(election)
            await asyncio.wait_for(election.start(), _CONNECT_TIMEOUT_S)
            return election

        try:
            leader = await join("p0")
            await asyncio.wait_for(leader.wait_for_leadership(), _CONNECT_TIMEOUT_S)
            follower = await join("p1")
            for trial in range(trials):
                # A trial starts once the follower waits on the leader and both are quiet.
                await asyncio.wait_for(_settled(leader, follower), _CONNECT_TIMEOUT_S)
                loop = asyncio.get_running_loop()
                elected: asyncio.Future[_EdgeCounts] = loop.create_future()
                follower.add_listener(_edge_counter(elected, leader, follower))
                start_s = time.monotonic()
                leaving = asyncio.ensure_future(leader.resign() if resign else leader.stop())
                at_s, old_requests, new_requests = await asyncio.wait_for(elected, _CONNECT_TIMEOUT_S)
                await asyncio.wait_for(leaving, _stop_timeout_s(1))
                kinds = collections.Counter(old_requests) + collections.Counter(new_requests)
                samples.append(
                    {
                        "time_ms": round((at_s - start_s) * 1000, 2),
                        "requests": sum(kinds.values()),
                        "by_kind": dict(sorted(kinds.items())),
                        "old_leader": old_requests,
                        "new_leader": new_requests,
                    }
                )
                if resign:
                    leader, follower = follower, leader
                else:
                    live.remove(leader)
                    leader, follower = follower, await join(f"p{trial + 2}")
        finally:
            await _stop_all(live)
        return samples

    async def one_path(self, n: int) -> dict[str, Any]:
        prefix = self.prefix(f"one-path-{n}")
        path = (await self.make_paths(prefix, 1))[0]
        client, listings = await self.client(count_listings=True)
        session = Session.for_client(client)
        tracker = _Tracker(n)
        elections = [Election(None, path, client=client, identity=f"e{i}") for i in range(n)]
        for i, election in enumerate(elections):
            election.add_listener(tracker.listener(i))
        result: dict[str, Any] = {"n": n}
        counts = session.zk.requests_sent
        try:
            before = collections.Counter(counts)
            gc.collect()
            start = self.clocks()
            starting = asyncio.gather(
                *(_timed(e.start(), tracker.joined_at, i) for i, e in enumerate(elections))
            )
            try:
                async with asyncio.timeout(self.args.deadline):
                    await starting
            except TimeoutError:
                starting.cancel()
                with contextlib.suppress(BaseException):
                    await starting
                result["collapsed"] = (
                    f"{len(tracker.joined_at)} of {n} joined, {len(tracker.leading)} leading "
                    f"after {self.args.deadline:g} s"
                )
            joined = self.clocks().since(start)
            result["join"] = {
                "joined_s": joined["wall_s"],
                "cpu_s": joined["cpu_s"],
                "server_cpu_s": joined["server_cpu_s"],
            }
            result["time_s"] = joined["wall_s"]
            result["leading"] = len(tracker.leading)
            # The queue settles: followers that listed before the last create list no more.
            await asyncio.sleep(self.args.session_timeout)
            requests = _difference(collections.Counter(counts), before)
            result["requests"] = requests
            result["requests_per_join"] = round(_joins(requests) / n, 3)
            assert listings is not None
            result["listings"] = listings.listings
            result["child_names"] = listings.names
            result["child_names_per_n2"] = round(listings.names / n**2, 3)
            names_before_stop = listings.names
        finally:
            result["stop"] = await self._stop(elections, session, client)
        result["stop"]["child_names"] = listings.names - names_before_stop
        return result


class _Tracker:
    """What the elections of one row said: who leads, since when, revocations, suspensions."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.started_s = time.monotonic()
        self.leading: set[int] = set()
        self.elected_s: dict[int, float] = {}
        self.joined_at: dict[int, float] = {}
        self.revocations = 0
        self.suspensions = 0
        self.all_leading = asyncio.Event()
        self.session_edges: list[tuple[float, str, str]] = []
        """Every edge of the shared session: seconds since the start, new state, reason."""

    def listener(self, i: int) -> Callable[[Transition], None]:
        def on_transition(transition: Transition) -> None:
            if transition.event is Event.ELECTED:
                self.leading.add(i)
                self.elected_s.setdefault(i, transition.monotonic_s - self.started_s)
                if len(self.leading) == self.n:
                    self.all_leading.set()
            elif transition.event is Event.REVOKED:
                self.leading.discard(i)
                self.revocations += 1

        return on_transition

    def on_session(self, change: SessionChange) -> None:
        at_s = round(time.monotonic() - self.started_s, 3)
        self.session_edges.append((at_s, change.state.value, str(change.reason)))
        if change.state in (SessionState.SUSPENDED, SessionState.LOST):
            self.suspensions += 1

    def edges_since(self, index: int) -> str:
        """The session's edges from ``index`` on, counted: ``suspended/lease_expired 3, ...``."""
        counted = collections.Counter(f"{state}/{reason}" for _, state, reason in self.session_edges[index:])
        return ", ".join(f"{edge} {count}" for edge, count in sorted(counted.items())) or "none"

    def elected_quantile(self, q: float) -> float | None:
        times = sorted(self.elected_s.values())
        if not times:
            return None
        return round(times[min(len(times) - 1, int(q * len(times)))], 3)


_EdgeCounts = tuple[float, dict[str, int], dict[str, int]]
"""When the follower was elected, and the requests of the old and new leader until then, by kind."""


def _edge_counter(
    elected: asyncio.Future[_EdgeCounts], leader: Election, follower: Election
) -> Callable[[Transition], None]:
    """A listener for ``follower`` that resolves ``elected`` at its elected edge with the requests
    both clients sent since this call, read at the edge itself (synchronously: nothing sent
    later is counted)."""
    old, new = leader.session.zk.requests_sent, follower.session.zk.requests_sent
    old_before, new_before = collections.Counter(old), collections.Counter(new)

    def on_transition(transition: Transition) -> None:
        if transition.event is Event.ELECTED and not elected.done():
            elected.set_result((time.monotonic(), _difference(old, old_before), _difference(new, new_before)))

    return on_transition


async def _settle(counts: collections.Counter[str], hold_s: float) -> float | None:
    """Wait ``hold_s``; return when, from now, the last request other than a probe was sent
    before a second without one (None if requests never stopped for a second)."""
    quiet_s, step_s = 1.0, 0.1
    start = time.monotonic()
    last = _joins(dict(counts))
    last_change_s = 0.0
    settled: float | None = None
    while (now := time.monotonic() - start) < hold_s:
        await asyncio.sleep(step_s)
        total = _joins(dict(counts))
        if total != last:
            last, last_change_s, settled = total, time.monotonic() - start, None
        elif settled is None and time.monotonic() - start - last_change_s >= quiet_s:
            settled = last_change_s
    del now
    return settled


async def _create(client: aiozk.ZKClient, path: str) -> None:
    with contextlib.suppress(aiozk.exc.NodeExists):
        await client.create(path)


async def _timed(aw: Awaitable[None], into: dict[int, float], i: int) -> None:
    await aw
    into[i] = time.monotonic()


async def _settled(leader: Election, follower: Election) -> None:
    """Until ``leader`` leads, ``follower`` follows, and neither sent a request for 100 ms."""
    quiet_s = 0.1
    while True:
        counts = sum(leader.session.zk.requests_sent.values()) + sum(
            follower.session.zk.requests_sent.values()
        )
        await asyncio.sleep(quiet_s)
        again = sum(leader.session.zk.requests_sent.values()) + sum(
            follower.session.zk.requests_sent.values()
        )
        if again == counts and leader.is_leader and follower.state is ElectionState.FOLLOWING:
            return


async def _close(client: aiozk.ZKClient) -> float:
    """Close a client within a bound (aiozk can hang in its repair loop); the seconds it took."""
    start = time.monotonic()
    with contextlib.suppress(Exception, TimeoutError):
        await asyncio.wait_for(client.close(), _CLOSE_TIMEOUT_S)
    return round(time.monotonic() - start, 3)


async def _stop_all(elections: Iterable[Election]) -> None:
    with contextlib.suppress(Exception, TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(e.stop() for e in elections), return_exceptions=True), _stop_timeout_s(1)
        )


class _Burners:
    """K processes spinning a CPU each, killed on the way out (and by the kernel if we die)."""

    def __init__(self, k: int) -> None:
        argv = [*parent_death_prefix(), sys.executable, "-c", _BURNER]
        self.processes = [subprocess.Popen(argv) for _ in range(k)]

    def close(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()


# ---------------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdicts(rows: list[_Row], floors: dict[tuple[int, int], _Row]) -> dict[str, list[str]]:
    """Each row's targets and whether they were met: ``'... met'`` or ``'... missed'``."""
    verdicts: dict[str, list[str]] = {}
    for row in rows:
        found: list[str] = []
        if row.error is not None:
            found.append("failed missed")
        elif row.key.startswith("elections/"):
            collapsed = any("collapsed" in r for r in row.rounds)
            found.append(f"all leading {'missed' if collapsed else 'met'}")
            revocations = sum(
                r.get("revocations_join", 0) + r.get("hold", {}).get("revocations", 0) for r in row.rounds
            )
            found.append(f"0 revocations {'met' if revocations == 0 and not collapsed else 'missed'}")
            per_join = row.median("requests_per_join")
            if per_join is not None:
                ok = per_join <= _REQUESTS_PER_JOIN_TARGET
                found.append(f"≤ {_REQUESTS_PER_JOIN_TARGET:g} requests/join {'met' if ok else 'missed'}")
            if row.size == _RATIO_TARGET_SIZE and row.burners == _RATIO_TARGET_BURNERS:
                ratio = _ratio(row, floors.get((row.size, row.burners)))
                ok = ratio is not None and ratio <= _RATIO_TARGET
                found.append(f"≤ {_RATIO_TARGET:g}x floor {'met' if ok else 'missed'}")
        elif row.key == "failover/stop":
            median = row.median("requests")
            ok = median is not None and median <= _REQUESTS_PER_FAILOVER_TARGET
            found.append(f"≤ {_REQUESTS_PER_FAILOVER_TARGET:g} requests {'met' if ok else 'missed'}")
        elif row.key.startswith("one-path/") and any("collapsed" in r for r in row.rounds):
            found.append("all joined missed")
        verdicts[f"{row.key}/{row.burners}"] = found
    return verdicts


def _ratio(row: _Row, floor: _Row | None) -> float | None:
    """Median over rounds of the row's time over its floor's time in the same round."""
    if floor is None:
        return None
    ratios = [
        mine["time_s"] / anchor["time_s"]
        for mine, anchor in zip(row.rounds, floor.rounds, strict=False)
        if mine.get("time_s") and anchor.get("time_s")
    ]
    return statistics.median(ratios) if ratios else None


def _titled(title: str) -> Table:
    return Table(title=title, title_justify="left", title_style="bold")


def _main_table(
    rows: list[_Row], floors: dict[tuple[int, int], _Row], verdicts: dict[str, list[str]], title: str
) -> Table:
    table = _titled(title)
    table.add_column("row")
    for column in (
        "burners",
        "rounds",
        "time s",
        "ratio",
        "req/join",
        "revoked join/hold",
        "susp.",
        "stop s",
        "RSS MB",
    ):
        table.add_column(column, justify="right")
    table.add_column("targets")
    for row in rows:
        ratio = _ratio(row, floors.get((row.size, row.burners))) if row.key.startswith("elections/") else None
        revoked = "-"
        suspensions = "-"
        stop = "-"
        if row.key.startswith(("elections/", "one-path/")) and row.rounds:
            revoked = "/".join(
                (
                    str(sum(r.get("revocations_join", 0) for r in row.rounds)),
                    str(sum(r.get("hold", {}).get("revocations", 0) for r in row.rounds)),
                )
            )
            suspensions = str(
                sum(
                    r.get("suspensions_join", 0) + r.get("hold", {}).get("suspensions", 0) for r in row.rounds
                )
            )
            stops = [r["stop"]["wall_s"] for r in row.rounds if "stop" in r]
            stop = _fmt(statistics.median(stops)) if stops else "-"
        time_s = row.median("time_s")
        time_text = _fmt(time_s)
        if any("collapsed" in r for r in row.rounds):
            time_text = f"[red]> {row.rounds[0].get('collapsed')}[/red]"
        per_join = row.median("requests_per_join")
        if row.key.startswith("failover/"):
            per_join = row.median("requests")
            time_text = f"{_fmt(row.median('time_ms'), 1)} ms"
        marks = [
            text.replace(" met", " [green]met[/green]").replace(" missed", " [red]missed[/red]")
            for text in verdicts.get(f"{row.key}/{row.burners}", [])
        ]
        table.add_row(
            row.key,
            str(row.burners),
            str(len(row.rounds)),
            time_text if row.error is None else f"[red]failed: {row.error}[/red]",
            _fmt(ratio),
            _fmt(per_join),
            revoked,
            suspensions,
            stop,
            _fmt(row.median("rss_peak_mb"), 0),
            ", ".join(marks),
        )
    return table


def _kinds_table(rows: list[_Row]) -> Table:
    """Requests by kind, per join (elections, one path) or per failover, medians over rounds."""
    table = _titled("Requests by kind: per join (per failover for failover/*)")
    kinds = sorted(
        {k for row in rows for r in row.rounds for k in (r.get("by_kind") or r.get("requests") or {})}
    )
    table.add_column("row")
    table.add_column("burners", justify="right")
    for kind in kinds:
        table.add_column(kind, justify="right")
    table.add_column("child names/join", justify="right")
    for row in rows:
        if row.key.startswith("floor/") or not row.rounds:
            continue
        per_round: list[dict[str, float]] = []
        for r in row.rounds:
            if row.key.startswith("failover/"):
                per_round.append({k: float(v) for k, v in r["by_kind"].items()})
            else:
                per_round.append(_per(r.get("requests", {}), r["n"]))
        cells = [_fmt(statistics.median(p.get(kind, 0.0) for p in per_round)) for kind in kinds]
        names = row.median("child_names_per_join")
        if row.key.startswith("one-path/"):
            names = statistics.median(r["child_names"] / r["n"] for r in row.rounds)
        table.add_row(row.key, str(row.burners), *cells, _fmt(names, 1))
    return table


def _session_lines(rows: list[_Row]) -> list[str]:
    """Per elections row (first round): the shared session's edges in each phase, and how many
    elections left with their graceful multi when stopped."""
    lines = ["Session edges of the shared client (first round) and graceful leaves at stop:"]
    for row in rows:
        if not row.key.startswith("elections/") or not row.rounds:
            continue
        r = row.rounds[0]
        stop = r.get("stop", {})
        leaves = stop.get("requests", {}).get("Transaction", 0)
        lines.append(
            f"  {row.key} burners {row.burners}: join: {r.get('join', {}).get('session_edges', '-')}; "
            f"hold: {r.get('hold', {}).get('session_edges', '-')}; stop: {stop.get('session_edges', '-')}; "
            f"leave multis sent at stop: {leaves} of {r['n']}, client close {stop.get('close_s', '-')} s"
        )
    return lines


def _phases_table(rows: list[_Row]) -> Table:
    table = _titled("Where the time goes (first round): seconds from the start of the gather")
    table.add_column("row", no_wrap=True)
    for column in (
        "burners",
        "all joined",
        "first elected",
        "p50 elected",
        "all leading",
        "our CPU",
        "ZK CPU",
        "max lag",
        "req/join at leading",
        "hold: requests",
        "settled",
        "watches",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        if not row.rounds or row.key.startswith("failover/"):
            continue
        r = row.rounds[0]
        join = r.get("join", r)
        hold = r.get("hold", {})
        table.add_row(
            row.key,
            str(row.burners),
            _fmt(join.get("joined_s")),
            _fmt(join.get("first_elected_s")),
            _fmt(join.get("p50_elected_s")),
            _fmt(join.get("wall_s")),
            _fmt(join.get("cpu_s")),
            _fmt(join.get("server_cpu_s")),
            _fmt(join.get("loop_lag_max_s"), 3),
            _fmt(_joins(join["requests"]) / r["n"]) if "requests" in join else "-",
            str(sum(hold["requests"].values())) if hold else "-",
            _fmt(hold.get("settled_s")),
            str(hold.get("server_watches", "-")) if hold else "-",
        )
    return table


# ---------------------------------------------------------------------------------------------
# Main


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of whole numbers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be one or more whole numbers ≥ 0: {text!r}")
    return values


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/many.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=_int_list,
        default=_DEFAULT_SIZES,
        metavar="N,...",
        help="elections per shared client (default 1000,10000; add 30000 for the big one)",
    )
    parser.add_argument(
        "--burners",
        type=_int_list,
        default=_DEFAULT_BURNERS,
        metavar="K,...",
        help="CPU-burning processes beside each size (default 0,1)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=_DEFAULT_HOLD_S,
        metavar="SECONDS",
        help=f"how long all must keep leading (default {_DEFAULT_HOLD_S:g})",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=_DEFAULT_DEADLINE_S,
        metavar="SECONDS",
        help=f"bound on reaching all leading, per row (default {_DEFAULT_DEADLINE_S:g})",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds, each row beside its floor in each (default 1)"
    )
    parser.add_argument(
        "--one-path",
        type=int,
        default=_DEFAULT_ONE_PATH,
        metavar="N",
        help=f"elections on one path for the one-path row (default {_DEFAULT_ONE_PATH}; 0: skip)",
    )
    parser.add_argument(
        "--failovers",
        type=int,
        default=_DEFAULT_FAILOVERS,
        metavar="K",
        help=f"failovers per failover row (default {_DEFAULT_FAILOVERS}; 0: skip)",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=_DEFAULT_SESSION_TIMEOUT_S,
        metavar="SECONDS",
        help=f"session timeout T (default {_DEFAULT_SESSION_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--json", type=argparse.FileType("w"), metavar="FILE", help="also write every measurement to FILE"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.hold < 0 or args.deadline <= 0 or args.one_path < 0 or args.failovers < 0:
        parser.error("--hold, --one-path and --failovers must be ≥ 0, --deadline > 0")
    if not 2 * _TICK_TIME_MS / 1000 <= args.session_timeout <= 20 * _TICK_TIME_MS / 1000:
        parser.error("--session-timeout must be within ZooKeeper's 2 to 20 ticks: 0.4 to 4 seconds")
    return args


async def _measure(label: str, row: _Row, console: Console, measure: Callable[[], Awaitable[Any]]) -> None:
    console.print(f"[dim]{label}...[/dim]")
    try:
        outcome = await measure()
    except Exception as error:  # a row that cannot be measured is reported, the rest go on
        row.error = f"{type(error).__name__}: {error}"[:200]
        console.print(f"[red]{label} failed:[/red] {row.error}")
        return
    if isinstance(outcome, list):
        row.rounds.extend(outcome)
    else:
        row.rounds.append(outcome)
    shown = outcome[-1] if isinstance(outcome, list) and outcome else outcome
    if isinstance(shown, dict):
        brief = {
            k: v
            for k, v in shown.items()
            if k in ("time_s", "time_ms", "requests_per_join", "requests", "collapsed")
        }
        console.print(f"[dim]  {brief}[/dim]")


async def _run(
    args: argparse.Namespace, console: Console, logs: _LogCounter
) -> tuple[list[_Row], dict[tuple[int, int], _Row], str]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    ensemble = ZooKeeperEnsemble(1, tick_time_ms=_TICK_TIME_MS)
    floors: dict[tuple[int, int], _Row] = {}
    rows: list[_Row] = []
    try:
        console.print(f"starting ZooKeeper (tickTime {_TICK_TIME_MS} ms)...")
        await asyncio.to_thread(ensemble.start)
        version = ensemble.servers[0].four_letter("srvr").splitlines()[0].removeprefix("Zookeeper version: ")
        bench = _Bench(ensemble, args, console)
        bench.lag.start()
        configs = [(n, k) for n in args.sizes for k in args.burners]
        for n, k in configs:
            floors[(n, k)] = _Row(f"floor/{n}", n, k)
            rows.append(floors[(n, k)])
            rows.append(_Row(f"elections/{n}", n, k))
        elections_rows = {(r.size, r.burners): r for r in rows if r.key.startswith("elections/")}
        for round_number in range(1, args.rounds + 1):
            for n, k in configs:
                burners = _Burners(k)
                try:
                    await asyncio.sleep(_BURNER_WARMUP_S if k else 0)
                    tag = f"round {round_number}, {k} burner(s)"
                    await _measure(f"floor/{n}, {tag}", floors[(n, k)], console, partial_floor(bench, n))
                    await _measure(
                        f"elections/{n}, {tag}", elections_rows[(n, k)], console, partial_elections(bench, n)
                    )
                finally:
                    burners.close()
        if args.failovers:
            for resign in (False, True):
                row = _Row("failover/resign" if resign else "failover/stop", 2, 0)
                rows.append(row)
                await _measure(row.key, row, console, partial_failover(bench, resign, args.failovers))
        if args.one_path:
            row = _Row(f"one-path/{args.one_path}", args.one_path, 0)
            rows.append(row)
            await _measure(row.key, row, console, partial_one_path(bench, args.one_path))
        await bench.lag.stop()
    finally:
        await asyncio.to_thread(ensemble.close)
    return rows, floors, version


def partial_floor(bench: _Bench, n: int) -> Callable[[], Awaitable[Any]]:
    return lambda: bench.floor(n)


def partial_elections(bench: _Bench, n: int) -> Callable[[], Awaitable[Any]]:
    return lambda: bench.elections(n)


def partial_failover(bench: _Bench, resign: bool, trials: int) -> Callable[[], Awaitable[Any]]:
    async def measure() -> list[dict[str, Any]]:
        return await bench.failover(resign=resign, trials=trials)

    return measure


def partial_one_path(bench: _Bench, n: int) -> Callable[[], Awaitable[Any]]:
    return lambda: bench.one_path(n)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    console = Console(stderr=True)
    logs = _LogCounter(console)
    logging.getLogger().addHandler(logs)
    started = time.monotonic()
    try:
        rows, floors, version = asyncio.run(_run(args, console, logs))
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("interrupted; every process started here has been killed")
        return 130
    elapsed_s = time.monotonic() - started
    verdicts = _verdicts(rows, floors)
    title = (
        f"Many elections on one client, ZooKeeper {version.split('-')[0]} (tickTime {_TICK_TIME_MS} ms), "
        f"T = {args.session_timeout:g} s, hold {args.hold:g} s, {args.rounds} round(s), "
        f"{elapsed_s:.0f} s on {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"peak RSS {_memory_mb('VmHWM'):.0f} MB"
    )
    output = Console()
    if not output.is_terminal:
        output.width = _REPORT_WIDTH
    output.print(_main_table(rows, floors, verdicts, title))
    output.print(_kinds_table(rows))
    output.print(_phases_table(rows))
    for line in _session_lines(rows):
        output.print(line)
    warnings = dict(logs.counts)
    if warnings:
        output.print(f"log records at WARNING or above: {warnings}")
        for message, count in logs.messages.most_common(8):
            output.print(f"  {count:6d}  {message}")
    if args.json is not None:
        document = {
            "zookeeper_version": version,
            "tick_time_ms": _TICK_TIME_MS,
            "session_timeout_s": args.session_timeout,
            "hold_s": args.hold,
            "deadline_s": args.deadline,
            "elapsed_s": round(elapsed_s, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "rss_peak_mb": round(_memory_mb("VmHWM"), 1),
            "log_records": warnings,
            "log_messages": dict(logs.messages.most_common()),
            "rows": [
                {
                    "key": row.key,
                    "size": row.size,
                    "burners": row.burners,
                    "error": row.error,
                    "targets": verdicts.get(f"{row.key}/{row.burners}", []),
                    "ratio_to_floor": _ratio(row, floors.get((row.size, row.burners)))
                    if row.key.startswith("elections/")
                    else None,
                    "rounds": row.rounds,
                }
                for row in rows
            ],
        }
        json.dump(document, args.json, indent=2)
        args.json.write("\n")
        args.json.close()
    missed = any(text.endswith("missed") for found in verdicts.values() for text in found)
    return 1 if missed or any(row.error for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
