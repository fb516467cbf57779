"""The periodic ``still_disconnected`` line: an outage is never silent for long.

Between the edge that starts an outage (``disconnected`` or ``suspended``) and the next one
(``revoked`` when the lease runs out, ``session_lost`` when ZooKeeper expires the session,
or ``reconnected``), seconds or hours may pass with nothing to log. While the session is not
connected, a warning every ``interval_s`` says how long it has been, why it started, and
which servers the client is trying, so that the log read at night shows an ongoing outage
rather than a quiet daemon.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from election_daemon.daemon.eventlog import EventLog
from election_daemon.library.events import Event, Reason
from election_daemon.library.session import Session, SessionChange, SessionState

__all__ = ["OutageReporter", "interval_for"]


def interval_for(session_timeout_s: float) -> float:
    """A third of the session timeout (a line before the lease runs out and before ZooKeeper
    may expire the session), at least 1 s and at most 10 s (a long outage stays readable)."""
    return min(max(session_timeout_s / 3, 1.0), 10.0)


class OutageReporter:
    """Logs ``still_disconnected`` every ``interval_s`` while ``session`` is not connected."""

    def __init__(
        self,
        session: Session,
        log: EventLog,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._log = log
        self._interval_s = interval_s
        self._clock = clock
        self._since: float | None = None
        self._reason: Reason | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Follow the session from now on (call it from the event loop)."""
        self._session.add_listener(self._on_change)
        if self._session.state not in (SessionState.CONNECTED, SessionState.CLOSED):
            self._begin(None)

    def close(self) -> None:
        self._session.remove_listener(self._on_change)
        self._end()

    def _on_change(self, change: SessionChange) -> None:
        if change.state is SessionState.CLOSED:
            self.close()
        elif change.state is SessionState.CONNECTED:
            self._end()
        elif self._since is None:
            self._begin(change.reason)

    def _begin(self, reason: Reason | None) -> None:
        self._since = self._clock()
        self._reason = reason
        self._arm()

    def _end(self) -> None:
        self._since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._tick)

    def _tick(self) -> None:
        if self._since is None:
            return
        session = self._session
        self._log.warning(
            Event.STILL_DISCONNECTED,
            reason=self._reason,
            elapsed_s=round(self._clock() - self._since, 3),
            session_state=session.state.value,
            lease_remaining_s=round(session.lease_remaining_s(), 3),
            servers=list(session.zk.servers),
        )
        self._arm()
