"""The leadership lease: how long this process may go on leading without hearing from ZooKeeper.

ZooKeeper cannot expire a session sooner than T (the negotiated session timeout) after it
last heard from the client. A request the server answered was heard no earlier than it was
sent, so the session is certainly alive until ``sent + T``. The lease ends at
``sent + LEASE_FRACTION * T`` for the latest answered send, leaving T/3 to stop the leader's
work before another contender can possibly be elected.

Pure logic over a monotonic clock reading, so it can be tested with a fake clock.
"""

from __future__ import annotations

__all__ = ["LEASE_FRACTION", "Lease"]

LEASE_FRACTION = 2 / 3


class Lease:
    """The lease of one ZooKeeper session, renewed by answered requests."""

    def __init__(self, session_timeout_s: float) -> None:
        if session_timeout_s <= 0:
            raise ValueError(f"session_timeout_s must be positive, not {session_timeout_s!r}")
        self._session_timeout_s = session_timeout_s
        self._expires_at: float | None = None

    @property
    def session_timeout_s(self) -> float:
        return self._session_timeout_s

    @property
    def length_s(self) -> float:
        return LEASE_FRACTION * self._session_timeout_s

    @property
    def expires_at(self) -> float | None:
        """Monotonic time at which the lease runs out; None before the first renewal."""
        return self._expires_at

    def renew(self, sent_at: float) -> bool:
        """Account for a request sent at ``sent_at`` that the server answered.

        Returns True if the lease got longer. Answers to older requests never shorten it.
        """
        expires_at = sent_at + self.length_s
        if self._expires_at is None or expires_at > self._expires_at:
            self._expires_at = expires_at
            return True
        return False

    def set_session_timeout(self, session_timeout_s: float) -> None:
        """Adopt the timeout the server negotiated; an existing lease is recomputed."""
        if session_timeout_s <= 0:
            raise ValueError(f"session_timeout_s must be positive, not {session_timeout_s!r}")
        if self._expires_at is not None:
            sent_at = self._expires_at - self.length_s
            self._session_timeout_s = session_timeout_s
            self._expires_at = sent_at + self.length_s
        else:
            self._session_timeout_s = session_timeout_s

    def invalidate(self) -> None:
        """Forget every renewal (the session is gone or suspect)."""
        self._expires_at = None

    def remaining_s(self, now: float) -> float:
        """Seconds left at monotonic time ``now``; 0 when expired or never renewed."""
        if self._expires_at is None:
            return 0.0
        return max(0.0, self._expires_at - now)

    def valid(self, now: float) -> bool:
        return self._expires_at is not None and now < self._expires_at
