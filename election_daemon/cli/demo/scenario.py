"""The show's script: start three daemons, wait for a leader, then stop or kill the leader a few
times, measuring each failover and restarting the old leader."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import TypeVar

from election_daemon.cli.demo.config import PARTICIPANT_IDS, DemoConfig
from election_daemon.cli.demo.fleet import EXIT_DEADLINE_S, Fleet
from election_daemon.cli.demo.model import Cluster, Failover, FaultKind, Member, fault_plan
from election_daemon.cli.demo.view import View
from election_daemon.errors import ElectionError

__all__ = ["DemoFailedError", "Scenario"]

_POLL_S = 0.02
# Three Python interpreters starting on a loaded two-core machine.
_FIRST_LEADER_DEADLINE_S = 30.0
_REJOIN_DEADLINE_S = 20.0
# How long each leader works before the next fault: long enough to see it print.
_HOLD_S = (1.0, 2.0)

_T = TypeVar("_T")


class DemoFailedError(ElectionError):
    """The scenario cannot go on: a deadline passed or the model reports a problem."""


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
        await self._until(lambda: not leader.alive or None, EXIT_DEADLINE_S, f"{leader.id} to exit")
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
                raise DemoFailedError(problems[0])
            value = probe()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise DemoFailedError(f"no {what} within {timeout_s:g} s")
            await asyncio.sleep(_POLL_S)
