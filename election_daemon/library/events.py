"""The log schema's vocabulary: every event and every reason, as code.

The log is an interface (README, "The log schema"): operators match on ``event`` and
``reason``. Both are closed sets, defined here once and used by every layer: the election's
transitions (:class:`~election_daemon.library.election.Transition`), the daemon's own lines
(child, hooks, systemd, HTTP), and the observers' ``watch --json`` lines. A test holds the
README's tables to exactly these values. Free text (an error's message, a handover's
target) goes in ``detail``, never in ``reason``.
"""

from __future__ import annotations

import enum

__all__ = ["REQUESTED_REVOCATIONS", "Event", "Reason"]


class Event(enum.StrEnum):
    """What happened: the ``event`` key of every log line."""

    # The election's transitions (library).
    STARTING = "starting"
    CONNECTED = "connected"
    RECONNECTED = "reconnected"
    DISCONNECTED = "disconnected"
    JOINED = "joined"
    RESUMED = "resumed"
    DEFERRED = "deferred"
    ELECTED = "elected"
    TERM_RECORDED = "term_recorded"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    SESSION_LOST = "session_lost"
    NODE_LOST = "node_lost"
    STOPPED = "stopped"
    PREDECESSOR_GONE = "predecessor_gone"
    INTERNAL_ERROR = "internal_error"
    FAILED = "failed"
    # The leader-only command (daemon).
    CHILD_STARTED = "child_started"
    CHILD_OUTPUT = "child_output"
    CHILD_RUNNING = "child_running"
    CHILD_SIGNALLED = "child_signalled"
    CHILD_EXITED = "child_exited"
    CHILD_STOPPED = "child_stopped"
    CHILD_FAILED = "child_failed"
    CHILD_START_RETRY = "child_start_retry"
    CHILD_STOP_FAILED = "child_stop_failed"
    LIFELINE_LOST = "lifeline_lost"
    # Hooks (daemon).
    HOOK_STARTED = "hook_started"
    HOOK_FINISHED = "hook_finished"
    HOOK_TIMEOUT = "hook_timeout"
    HOOK_CRASHED = "hook_crashed"
    HOOK_DROPPED = "hook_dropped"
    # The daemon itself.
    SIGNAL_RECEIVED = "signal_received"
    CONFIG_WARNING = "config_warning"
    STILL_DISCONNECTED = "still_disconnected"
    ZOOKEEPER_UNREACHABLE = "zookeeper_unreachable"
    ZOOKEEPER_REFUSED = "zookeeper_refused"
    SESSION_TIMEOUT_REFUSED = "session_timeout_refused"
    ELECTION_FAILED = "election_failed"
    NOT_ELECTED = "not_elected"
    STOP_FAILED = "stop_failed"
    HTTP_LISTENING = "http_listening"
    HTTP_FAILED = "http_failed"
    SYSTEMD_NOTIFY_FAILED = "systemd_notify_failed"
    SYSTEMD_NOTIFY_UNSUPPORTED = "systemd_notify_unsupported"
    SYSTEMD_WATCHDOG_INVALID = "systemd_watchdog_invalid"
    SYSTEMD_WATCHDOG_LATE = "systemd_watchdog_late"
    SYSTEMD_WATCHDOG_WITHHELD = "systemd_watchdog_withheld"
    LOG = "log"
    # Observers (watch --json).
    LEADER_OBSERVED = "leader_observed"
    LEADER_CHANGED = "leader_changed"


class Reason(enum.StrEnum):
    """Why: the ``reason`` key of transitions, child stops and observed changes."""

    # Session edges.
    CONNECTED = "connected"
    RECONNECTED = "reconnected"
    NEW_SESSION = "new_session"
    LEASE_EXPIRED = "lease_expired"
    CONNECTION_LOST = "connection_lost"
    READ_ONLY = "read_only"
    SESSION_EXPIRED = "session_expired"
    SESSION_CLOSED = "session_closed"
    # The node and the queue.
    NODE_DELETED = "node_deleted"
    HANDOVER = "handover"
    PRIORITY = "priority"
    # Leaving: asked for by us, an operator, or the policy.
    RESIGNED = "resigned"
    STEP_DOWN = "step_down"
    PRIORITY_HANDOVER = "priority_handover"
    STOPPED = "stopped"
    START_FAILED = "start_failed"
    REVOKED_DURING_START = "revoked_during_start"
    # Failures.
    INTERNAL_ERROR = "internal_error"
    NO_AUTH = "no_auth"
    # Observers.
    WATCH_STARTED = "watch_started"
    FIRST_CONTENDER = "first_contender"
    LEADER_LEFT = "leader_left"
    QUEUE_CHANGED = "queue_changed"
    # Signals the daemon stops on.
    SIGTERM = "SIGTERM"
    SIGINT = "SIGINT"


# The reasons a leader gives up leadership because someone asked: itself (``resign()``), an
# operator, the priority policy, or a shutdown. Any other revocation is a loss (logged as a
# warning; ``--exit-on-loss`` exits on it).
REQUESTED_REVOCATIONS = frozenset(
    {Reason.RESIGNED, Reason.STEP_DOWN, Reason.PRIORITY_HANDOVER, Reason.STOPPED}
)
