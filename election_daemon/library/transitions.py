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
    # What an operator needs to read one line on its own. Each is ``None`` when unknown or
    # when the event is not one it belongs to (see _EVENT_FIELDS for the keys an event always has).
    previous_id: str | None = None
    """``elected``, ``term_recorded``: the identity of the previous term's leader (``None`` if
    there was none or it is unknown)."""
    previous_token: int | None = None
    """``elected``, ``term_recorded``: the token of the previous term."""
    previous_alive_at: float | None = None
    """``term_recorded``: the previous term's last proof of life that this participant can know, in
    seconds since the epoch (wall clock; another host's clock when the previous leader said so
    itself). When the previous leader crashed, this is before ZooKeeper expired its session, so
    :attr:`failover_s` includes that wait."""
    elected_at: float | None = None
    """``term_recorded``: when the term was elected (unix time): :attr:`failover_s` ends there,
    not at the record's write."""
    term_s: float | None = None
    """``revoked``: how long the term that ends lasted."""
    server: str | None = None
    """``connected``, ``reconnected``: the server (``host:port``) the session is confirmed on."""
    session_timeout_s: float | None = None
    """``connected``, ``reconnected``: the session timeout the server negotiated."""
    leader_id: str | None = None
    """``joined``, ``resumed``: the identity of the current leader, as the queue shows it."""
    target_id: str | None = None
    """``deferred``: the identity of the participant stepped aside for."""

    @property
    def failover_s(self) -> float | None:
        """``term_recorded``: seconds from the previous term's last proof of life to this
        election (its ``elected`` edge)."""
        if self.previous_alive_at is None:
            return None
        # Clocks of two hosts: never report a negative failover for a skew.
        return max(0.0, (self.elected_at or self.timestamp) - self.previous_alive_at)

    def log_fields(self) -> dict[str, Any]:
        """The fixed keys of the log schema (``timestamp`` is added by the logger), ``detail``,
        and the event's own keys (``previous_id`` on ``elected``, ``term_s`` on ``revoked``, ...)."""
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
        extra: dict[str, Any] = {
            "previous_id": self.previous_id,
            "previous_token": self.previous_token,
            "failover_s": _rounded(self.failover_s),
            "term_s": _rounded(self.term_s),
            "server": self.server,
            "session_timeout_s": self.session_timeout_s,
            "leader_id": self.leader_id,
            "target_id": self.target_id,
        }
        always = _EVENT_FIELDS.get(self.event, ())
        fields.update((k, v) for k, v in extra.items() if v is not None or k in always)
        return fields


# The keys an event's line always has (``null`` when unknown), so that a query on them finds
# every such line; other events carry them only when known.
_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    Event.ELECTED: ("previous_id", "previous_token"),
    Event.TERM_RECORDED: ("previous_id", "previous_token", "failover_s"),
    Event.REVOKED: ("term_s",),
    Event.CONNECTED: ("server", "session_timeout_s"),
    Event.RECONNECTED: ("server", "session_timeout_s"),
    Event.JOINED: ("leader_id",),
    Event.RESUMED: ("leader_id",),
    Event.DEFERRED: ("target_id",),
}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
