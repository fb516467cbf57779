"""Prometheus metrics of an election: leadership, terms, session health, failover time, the command.

Create one :class:`ElectionMetrics` per :class:`~election_daemon.library.election.Election`, before
starting it, and serve its registry however the application likes, e.g.
``prometheus_client.generate_latest(metrics.registry)``; the daemon serves it at ``/metrics``.

Names follow Prometheus' conventions under one prefix, ``election_daemon_``: base units in
the name (``_seconds``), ``_total`` on counters, ``_info`` on series of value 1 that carry
text as labels. Every series of an election carries the one label ``path``: stable across
restarts, whatever the participant's identity (the default identity, ``host:pid``, changes at
every restart, so it is only in ``election_daemon_participant_info``). Several elections
may share a registry; two participants of the same path need a registry each.

Counters and the failover histogram are fed by the election's transitions; the values that
age (leadership, session state, lease, time since ZooKeeper last answered, the term) are read
at scrape time, so a scrape never reports a lease that has run out since the last event.
Reading them never blocks or awaits: a scrape from another thread
(``prometheus_client.start_http_server``) is fine.

Counters are ``prometheus_client`` counters, which export a ``_created`` series unless
``prometheus_client.disable_created_metrics()`` was called (the daemon calls it).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable
from typing import ClassVar
from weakref import WeakKeyDictionary, WeakValueDictionary

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

import election_daemon
from election_daemon.errors import ElectionError
from election_daemon.library.election import Election, Transition
from election_daemon.library.events import Event
from election_daemon.library.session import SessionState

__all__ = ["FAILOVER_BUCKETS_S", "PREFIX", "ElectionMetrics", "HookOutcome"]

PREFIX = "election_daemon_"

FAILOVER_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Buckets of ``election_daemon_failover_seconds``: a handover takes milliseconds, a crash seconds."""

_LABELS = ("path",)

HookOutcome = str
"""How a hook run ended: ``ok``, ``failed`` (non-zero status), ``timeout``, ``not_started``,
``dropped`` (queue full or runner closed), ``crashed`` (a bug of the runner)."""

# The events after which this participant's next election counts as a failover, timed from
# the latest of them, when the election cannot say when the previous term was last alive.
_TERM_ENDED = frozenset({Event.REVOKED, Event.SESSION_LOST, Event.PREDECESSOR_GONE})


class ElectionMetrics:
    """Prometheus metrics of ``election``, exported through ``registry``.

    :param election: the election to observe; create the metrics before starting it so that
        every transition is counted. The scrape-time series are exported as long as the
        election (which holds this object as a listener) or this object is referenced.
    :param registry: where to export (default: a new registry of its own, :attr:`registry`).
        A second ``ElectionMetrics`` for the same path in one registry takes over the series
        of the first; counters go on from where they were.
    :param command_running: for the daemon: whether the leader-only command runs now.
        Without it, the ``election_daemon_command_*`` and ``election_daemon_hook_*`` series
        are not exported.

    The README ("Endpoints and metrics") lists every series. ``election_daemon_failover_seconds``
    is observed each time this participant starts a term after another one (its own or
    another participant's). When the election knows the previous term's last proof of life
    (:attr:`Transition.failover_s`: the previous leader's last sign of life that the new leader
    can know, so that a crashed leader's session-expiry wait is included), it measures from
    there; otherwise from the end of the previous term as this participant saw it (the node
    it waited on gone, its own revocation, its session lost), which leaves that wait out.
    """

    def __init__(
        self,
        election: Election,
        *,
        registry: CollectorRegistry | None = None,
        command_running: Callable[[], bool] | None = None,
    ) -> None:
        self.election = election
        self.registry = CollectorRegistry() if registry is None else registry
        self._command_running = command_running
        self._labels = (election.path,)
        self._metrics = _RegistryMetrics.of(self.registry)
        self._terms_started = self._metrics.terms_started.labels(*self._labels)
        self._failover = self._metrics.failover.labels(*self._labels)
        if command_running is not None:
            self._metrics.command_restarts.labels(*self._labels)  # exported as 0 from the start
        self._last_token: int | None = None
        self._term_ended_s: float | None = None
        self._own_wait_s: float | None = None
        self._command_started = False
        self._metrics.live.members[self._labels] = self
        election.add_listener(self._on_transition)

    def command_started(self) -> None:
        """Count one start of the leader-only command; every start after the first is a restart."""
        if self._command_started:
            self._metrics.command_restarts.labels(*self._labels).inc()
        self._command_started = True

    def command_exited(self, exit_status: int, *, stopped_by_daemon: bool) -> None:
        """Count one exit of the command: its shell status (128+N for signal N), and whether
        the daemon stopped it (a revocation, a shutdown) or it ended by itself."""
        labels = (*self._labels, str(exit_status), "true" if stopped_by_daemon else "false")
        self._metrics.command_exits.labels(*labels).inc()

    def hook_finished(self, hook: str, outcome: HookOutcome) -> None:
        """Count one hook run (``hook``: ``elected``, ``revoked``, ...) by its outcome."""
        self._metrics.hook_runs.labels(*self._labels, hook, outcome).inc()

    def _on_transition(self, t: Transition) -> None:
        self._metrics.transitions.labels(*self._labels, t.event).inc()
        if t.event is Event.ELECTED:
            if t.token != self._last_token:
                self._terms_started.inc()
                self._last_token = t.token
            # Timed by the term's record when it lands (term_recorded); else by our own wait.
            self._own_wait_s = None if self._term_ended_s is None else t.monotonic_s - self._term_ended_s
            self._term_ended_s = None
        elif t.event is Event.TERM_RECORDED:
            failover_s = t.failover_s if t.failover_s is not None else self._own_wait_s
            if failover_s is not None:
                self._failover.observe(failover_s)
            self._own_wait_s = None
        elif t.event in _TERM_ENDED:
            self._term_ended_s = t.monotonic_s

    def _add_live_samples(self, families: _LiveFamilies) -> None:
        e = self.election
        labels = list(self._labels)
        families.participant.add_metric(labels, {"id": e.identity})
        leading = e.is_leader
        families.is_leader.add_metric(labels, float(leading))
        term = e.term
        if leading and term is not None:
            families.term_token.add_metric(labels, float(term.token))
            families.term_start.add_metric(labels, term.started_at)
        try:
            session = e.session
        except ElectionError:  # not started yet: no session to report on
            session = None
        current = session.state if session is not None else None
        for state in SessionState:
            families.connection_state.add_metric([*labels, state.value], float(state is current))
        if session is not None:
            families.session_timeout.add_metric(labels, session.negotiated_timeout_s)
            families.lease_remaining.add_metric(labels, session.lease_remaining_s())
            sent = session.zk.last_answered_send
            if sent is not None:
                families.last_answer_age.add_metric(labels, time.monotonic() - sent)
        if self._command_running is not None:
            families.command_running.add_metric(labels, float(self._command_running()))


class _LiveFamilies:
    """The scrape-time gauges of one scrape, filled in by every election of the registry."""

    def __init__(self) -> None:
        self.build = InfoMetricFamily(
            f"{PREFIX}build",
            "The election_daemon package and Python running this process.",
            value={"version": election_daemon.__version__, "python": platform.python_version()},
        )
        self.participant = InfoMetricFamily(
            f"{PREFIX}participant",
            "This participant's identity (the default, host:pid, changes at every restart).",
            labels=_LABELS,
        )
        self.is_leader = GaugeMetricFamily(
            f"{PREFIX}is_leader",
            "1 while this participant leads with an unexpired lease (checked at scrape time), else 0.",
            labels=_LABELS,
        )
        self.term_token = GaugeMetricFamily(
            f"{PREFIX}term_token",
            "The fencing token of the term this participant leads (only while it leads).",
            labels=_LABELS,
        )
        self.term_start = GaugeMetricFamily(
            f"{PREFIX}term_start_timestamp_seconds",
            "When the term this participant leads started, in seconds since the epoch (only while it leads).",
            labels=_LABELS,
        )
        self.connection_state = GaugeMetricFamily(
            f"{PREFIX}connection_state",
            "1 for the current state of this participant's ZooKeeper session "
            "(connecting, connected, disconnected, suspended, lost, closed), 0 for the others.",
            labels=(*_LABELS, "state"),
        )
        self.session_timeout = GaugeMetricFamily(
            f"{PREFIX}session_timeout_seconds",
            "The session timeout ZooKeeper negotiated (the requested one before the first session).",
            labels=_LABELS,
            unit="seconds",
        )
        self.last_answer_age = GaugeMetricFamily(
            f"{PREFIX}zookeeper_last_answer_age_seconds",
            "Seconds since the send of the last request ZooKeeper answered on this participant's "
            "connection; the lease is renewed from that send.",
            labels=_LABELS,
            unit="seconds",
        )
        self.lease_remaining = GaugeMetricFamily(
            f"{PREFIX}lease_remaining_seconds",
            "Seconds left of the session's lease: how much longer this participant may lead "
            "without hearing from ZooKeeper (0 when expired).",
            labels=_LABELS,
            unit="seconds",
        )
        self.command_running = GaugeMetricFamily(
            f"{PREFIX}command_running",
            "1 while the leader-only command runs, else 0.",
            labels=_LABELS,
        )

    def families(self) -> list[Metric]:
        return [
            self.build,
            self.participant,
            self.is_leader,
            self.term_token,
            self.term_start,
            self.connection_state,
            self.session_timeout,
            self.last_answer_age,
            self.lease_remaining,
            self.command_running,
        ]


class _LiveCollector:
    """A custom collector for the values that must be read at scrape time."""

    def __init__(self) -> None:
        # Weak: an election that is dropped leaves the scrape, and no member may keep the
        # registry (a key of _RegistryMetrics._by_registry) alive.
        self.members: WeakValueDictionary[tuple[str, ...], ElectionMetrics] = WeakValueDictionary()

    def describe(self) -> Iterable[Metric]:
        return _LiveFamilies().families()

    def collect(self) -> Iterable[Metric]:
        families = _LiveFamilies()
        for member in tuple(self.members.values()):
            member._add_live_samples(families)
        return families.families()


class _RegistryMetrics:
    """The metrics of one registry, shared by every election exported through it."""

    _by_registry: ClassVar[WeakKeyDictionary[CollectorRegistry, _RegistryMetrics]] = WeakKeyDictionary()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.transitions = Counter(
            f"{PREFIX}transitions",
            "Transitions of this participant's election, by event (joined, elected, revoked, "
            "suspended, session_lost, ...).",
            (*_LABELS, "event"),
            registry=registry,
        )
        self.terms_started = Counter(
            f"{PREFIX}terms_started",
            "Terms of leadership this participant started: elections with a new token "
            "(leadership resumed after a brief suspension keeps its term).",
            _LABELS,
            registry=registry,
        )
        self.failover = Histogram(
            f"{PREFIX}failover_seconds",
            "Seconds without a leader before this participant's term: from the previous term's "
            "last proof of life this participant can know (a crashed leader's session-expiry "
            "wait included) or, when unknown, from the end of that term as it saw it.",
            _LABELS,
            buckets=FAILOVER_BUCKETS_S,
            unit="seconds",
            registry=registry,
        )
        self.command_restarts = Counter(
            f"{PREFIX}command_restarts",
            "Starts of the leader-only command after its first start in this process.",
            _LABELS,
            registry=registry,
        )
        self.command_exits = Counter(
            f"{PREFIX}command_exits",
            "Exits of the leader-only command, by shell status (128+N for signal N) and by "
            "whether the daemon stopped it.",
            (*_LABELS, "code", "stopped_by_daemon"),
            registry=registry,
        )
        self.hook_runs = Counter(
            f"{PREFIX}hook_runs",
            "Runs of --on-elected/--on-revoked hooks, by hook and outcome (ok, failed, timeout, "
            "not_started, dropped, crashed).",
            (*_LABELS, "hook", "outcome"),
            registry=registry,
        )
        self.live = _LiveCollector()
        registry.register(self.live)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> _RegistryMetrics:
        metrics = cls._by_registry.get(registry)
        if metrics is None:
            metrics = cls._by_registry[registry] = cls(registry)
        return metrics
