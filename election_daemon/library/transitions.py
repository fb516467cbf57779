"""What an election reports: its states, its terms, and each transition (the log schema's record).

Defined apart from :mod:`.election` so that readers of the events (the daemon, metrics,
tests) need nothing of the machinery; :mod:`.election` re-exports them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from election_daemon.library.events import Event, Reason

__all__ = ["ElectionState", "Term", "Transition"]


class ElectionState(enum.Enum):
    """Where this participant stands. Only LEADING means "do the leader's work"."""

    IDLE = "idle"
    """Not started."""
    JOINING = "joining"
    """Connecting, or putting our node in the queue."""
    FOLLOWING = "following"
    """In the queue, waiting for the node before ours to go."""
    LEADING = "leading"
    """First in the queue, node owned by our live session, lease valid."""
    SUSPENDED = "suspended"
    """Session in doubt: not leading; will re-verify our node before leading again."""
    STOPPED = "stopped"
    """Left the election for good."""


@dataclass(frozen=True, slots=True)
class Term:
    """One term of leadership. ``token`` strictly increases from term to term.

    The token is the czxid of the winning node: assigned by ZooKeeper's consensus, it grows
    across leader changes, session expiry, ZooKeeper leader changes and re-creation of the
    election path (sequence numbers restart; czxids do not). Leadership that resumes on the
    same node after a brief suspension keeps its token: nobody can have led in between.
    """

    token: int
    node: str
    path: str
    identity: str
    session_id: int
    started_at: float
    started_monotonic: float


@dataclass(frozen=True, slots=True)
class Transition:
    """One edge of the election's state machine: the log schema's record."""

    event: Event
    state: ElectionState
    previous_state: ElectionState
    reason: Reason | None
    path: str
    id: str
    node: str | None
    token: int | None
    session_id: int | None
    timestamp: float
    monotonic_s: float
    error: BaseException | None = None
    """The exception behind an ``internal_error`` event (not part of the log schema's keys)."""
    detail: str | None = None
    """Free text beside the reason: an error's message, a handover's target."""

    def log_fields(self) -> dict[str, Any]:
        """The fixed keys of the log schema (``timestamp`` is added by the logger), and ``detail``."""
        fields: dict[str, Any] = {
            "event": self.event,
            "state": self.state.value,
            "previous_state": self.previous_state.value,
            "reason": self.reason,
            "path": self.path,
            "id": self.id,
            "node": self.node,
            "token": self.token,
            "session_id": f"0x{self.session_id:x}" if self.session_id else None,
            "monotonic_s": round(self.monotonic_s, 6),
        }
        if self.detail is not None:
            fields["detail"] = self.detail
        return fields
