"""The priority policy: who should lead, when a leader hands over, and the bound on moves.

Pure: no ZooKeeper and no asyncio. The queue comes in as data (the contenders of one
listing, node paths), time from a clock passed in. The election asks this module what to do
and does the I/O itself (checking that a target is a live ephemeral contender, writing the
handover, leaving its place).

The rules:

- **Preferred**: the highest priority present leads; equal priorities keep queue order.
- **Before leading** (:meth:`PriorityPolicy.deferral`): the would-be leader steps aside for
  a pending handover's target, or else for a higher-priority contender (writing a handover
  to it, so that those in between step aside too).
- **While leading** (:meth:`PriorityPolicy.successor`): a sitting leader hands over to a
  higher-priority contender only once that contender has been in the queue continuously,
  as the leader sees it, for ``priority_stable_s`` (default: twice the session timeout).
  One that comes and goes causes no handover; one that rejoins starts a new wait.
- **Once per target** (:meth:`PriorityPolicy.may_step_aside_for`): a participant steps aside
  for a given node at most once, so a node that never takes over cannot keep everyone
  deferring to it in turn, forever.
- **The move budget**: every move driven by what ZooKeeper holds (a deferral, a priority
  handover, a step-down, rejoining after our node was deleted) is paid from one
  :class:`~._pacing.TokenBucket`: a burst of :data:`MOVES_BURST`, then one per
  :data:`MOVE_REFILL_T` session timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from election_daemon.library._pacing import TokenBucket
from election_daemon.library.recipes import Contender

__all__ = [
    "MAX_REMEMBERED",
    "MOVES_BURST",
    "MOVE_REFILL_T",
    "Deferral",
    "PriorityPolicy",
    "preferred",
]

MOVES_BURST = 5
"""Moves driven by ZooKeeper's contents that may be made at once."""
MOVE_REFILL_T = 0.5
"""Then one more move per this many session timeouts."""
MAX_REMEMBERED = 1024
"""Node names remembered as deferred to (unique forever, so forgetting is safe)."""


def preferred(contenders: Iterable[Contender]) -> Contender:
    """The contender that should lead: the highest priority, then the earliest in the queue."""
    return max(contenders, key=lambda c: (c.priority, -c.rank))


@dataclass(frozen=True, slots=True)
class Deferral:
    """Step aside, before leading, for the node ``target``."""

    target: str
    write_handover: bool
    """Whether to write a handover naming ``target`` (False: one is pending already)."""


class PriorityPolicy:
    """The priority rules for one participant of the election under ``path``.

    It remembers, between listings, when each higher-priority node was first seen while we
    led, which nodes we stepped aside for, and the move budget.
    """

    def __init__(
        self,
        path: str,
        priority: int,
        *,
        stable_s: float | None,
        session_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.priority = priority
        self._stable_s = stable_s
        self._clock = clock
        self.moves = TokenBucket(MOVES_BURST, MOVE_REFILL_T * session_timeout_s, clock)
        # When this leader first saw each higher-priority node (the anti-flapping rule).
        self._first_seen: dict[str, float] = {}
        # Nodes we stepped aside for, or declined to: never twice for the same one.
        self._deferred_to: set[str] = set()

    def node(self, contender: Contender) -> str:
        return f"{self.path}/{contender.name}"

    def stable_s(self, session_timeout_s: float) -> float:
        """How long a higher-priority contender must wait before a sitting leader hands over."""
        return 2 * session_timeout_s if self._stable_s is None else self._stable_s

    def _forget_absent(self, contenders: Iterable[Contender]) -> set[str]:
        names = {self.node(c) for c in contenders}
        self._deferred_to &= names
        return names

    def deferral(
        self, our_node: str, mine: Contender, contenders: Sequence[Contender], handover_to: str | None
    ) -> Deferral | None:
        """Whom to step aside for instead of leading, if anyone (not yet checked as live).

        ``contenders`` is the whole queue, ours included; ``handover_to`` the target of a
        well-formed pending handover. A target we stepped aside for once is not returned.
        """
        names = self._forget_absent(contenders)
        if handover_to is not None and handover_to != our_node and handover_to in names:
            found = Deferral(handover_to, write_handover=False)
        elif contenders and (best := preferred(contenders)).priority > mine.priority:
            found = Deferral(self.node(best), write_handover=True)
        else:
            return None
        return None if found.target in self._deferred_to else found

    def successor(
        self,
        contenders: Sequence[Contender],
        *,
        is_mine: Callable[[Contender], bool],
        session_timeout_s: float,
    ) -> tuple[str | None, float | None]:
        """While leading: ``(node, None)`` to hand over to now, ``(None, wait_s)`` to look again
        in ``wait_s`` seconds, or ``(None, None)`` when nobody is preferred to us.

        Call it at every listing of the queue: a contender absent from one listing starts
        its wait again at the next.
        """
        now = self._clock()
        self._forget_absent(contenders)
        better = [
            c
            for c in contenders
            if c.priority > self.priority and not is_mine(c) and self.node(c) not in self._deferred_to
        ]
        self._first_seen = {c.name: self._first_seen.get(c.name, now) for c in better}
        if not better:
            return None, None
        best = preferred(better)
        stable_s = self.stable_s(session_timeout_s)
        waited_s = now - self._first_seen[best.name]
        if waited_s >= stable_s:
            return self.node(best), None
        return None, stable_s - waited_s

    def may_step_aside_for(self, target: str) -> bool:
        """Once per target, within the move budget: no write can make us defer forever.

        Asking counts as the one time, whatever the answer.
        """
        if target in self._deferred_to:
            return False
        self.decline(target)
        return self.moves.try_take()

    def decline(self, target: str) -> None:
        """Never step aside for ``target`` (it is not a live contender, or the budget said no)."""
        if len(self._deferred_to) >= MAX_REMEMBERED:
            self._deferred_to.clear()
        self._deferred_to.add(target)

    def may_step_down(self) -> bool:
        """Whether a step-down request may be honoured now (within the move budget)."""
        return self.moves.try_take()

    def pace_s(self) -> float:
        """Take a move from the budget: the seconds to wait before making it."""
        return self.moves.reserve()

    def left_the_lead(self) -> None:
        """Forget the waits: after leading again, every contender waits anew."""
        self._first_seen = {}
