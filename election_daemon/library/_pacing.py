"""A token bucket: the bound on how often a participant moves, whatever ZooKeeper holds.

Hostile or buggy writes (a deleted node, a step-down request, a handover to a node that will
never lead) each make a participant leave its place and rejoin. Each such move is paid for
from a bucket: a burst is free, then moves wait for the bucket to refill, so no write
pattern can drive a participant faster than ``capacity`` moves at once and one every
``refill_s`` after that.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """``capacity`` tokens, one more every ``refill_s`` seconds of ``clock``."""

    def __init__(self, capacity: int, refill_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1 or refill_s <= 0:
            raise ValueError("a bucket needs a capacity of at least 1 and a positive refill time")
        self.capacity = capacity
        self.refill_s = refill_s
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) / self.refill_s)
        self._at = now

    def try_take(self) -> bool:
        """Take a token if one is there."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def reserve(self) -> float:
        """Take a token, in advance if need be: the seconds to wait before using it."""
        self._refill()
        self._tokens -= 1
        return max(0.0, -self._tokens * self.refill_s)
