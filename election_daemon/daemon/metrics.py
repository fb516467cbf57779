"""Prometheus metrics of an election: leadership, transitions, terms, session health, failover time.

Create one :class:`ElectionMetrics` per :class:`~election_daemon.library.election.Election`, before
starting it, and serve its registry however the application likes, e.g.
``prometheus_client.generate_latest(metrics.registry)``; the daemon serves it at ``/metrics``.
Every series carries the labels ``path`` (the election) and ``id`` (this participant), so
several elections can share one registry.

Counters and the failover histogram are fed by the election's transitions; the values that
age (leadership, session state, lease, time since ZooKeeper last answered) are read at scrape
time, so a scrape never reports a lease that has run out since the last event. Reading them
never blocks or awaits: a scrape from another thread (``prometheus_client.start_http_server``)
is fine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import ClassVar
from weakref import WeakKeyDictionary, WeakValueDictionary

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from election_daemon.errors import ElectionError
from election_daemon.library.election import Election, Transition
from election_daemon.library.session import SessionState

__all__ = ["FAILOVER_BUCKETS_S", "ElectionMetrics"]

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
"""Buckets of ``election_failover_seconds``: a handover takes milliseconds, a lost session seconds."""

_LABELS = ("path", "id")

# The events after which this participant's next election counts as a failover, timed from
# the latest of them: the end of the previous term as this participant can see it.
_TERM_ENDED = frozenset({"revoked", "session_lost", "predecessor_gone"})


class ElectionMetrics:
    """Prometheus metrics of ``election``, exported through ``registry``.

    :param election: the election to observe; create the metrics before starting it so that
        every transition is counted. The scrape-time series are exported as long as the
        election (which holds this object as a listener) or this object is referenced.
    :param registry: where to export (default: a new registry of its own, :attr:`registry`).
        A second ``ElectionMetrics`` for the same path and id in one registry takes over the
        series of the first; counters go on from where they were.
    :param child_running: for the daemon: whether the leader-only command runs now. Without
        it, the ``election_child_*`` series are not exported.

    The metrics, each labelled ``path`` and ``id``:

    - ``election_is_leader``: 1 while leading with an unexpired lease (read at scrape time).
    - ``election_transitions_total{event}``: transitions by event (``joined``, ``elected``,
      ``revoked``, ``suspended``, ``session_lost``, ...).
    - ``election_terms_started_total``: elections with a new token. Leadership resumed on
      the same node after a brief suspension keeps its token and counts as an ``elected``
      transition but not as a new term.
    - ``election_connection_state{state}``: 1 for the session's current state, 0 for the others.
    - ``election_zookeeper_last_answer_age_seconds``: time since the send of the last request
      ZooKeeper answered (the lease is renewed from that send).
    - ``election_lease_remaining_seconds``: what is left of the lease.
    - ``election_failover_seconds``: see below.
    - ``election_child_restarts_total`` and ``election_child_running``: the leader-only command.

    ``election_failover_seconds`` is observed each time this participant is elected after it
    saw a term end. It measures from the latest such end to the ``elected`` transition.
    A term ends, as far as this participant can see, when the node it was waiting on
    goes (``predecessor_gone``: the leader's node, for the next in line), when its own
    leadership is revoked (a resignation, or a lease or connection lost and later regained),
    or when its session is lost. It does not include the time ZooKeeper takes to notice
    that a crashed leader is gone (up to the session timeout), which no participant can
    observe. It also leaves out the first election of a participant that saw no term end.
    """

    def __init__(
        self,
        election: Election,
        *,
        registry: CollectorRegistry | None = None,
        child_running: Callable[[], bool] | None = None,
    ) -> None:
        self.election = election
        self.registry = CollectorRegistry() if registry is None else registry
        self._child_running = child_running
        self._labels = (election.path, election.identity)
        self._metrics = _RegistryMetrics.of(self.registry)
        self._terms_started = self._metrics.terms_started.labels(*self._labels)
        self._failover = self._metrics.failover.labels(*self._labels)
        if child_running is not None:
            self._metrics.child_restarts.labels(*self._labels)  # exported as 0 from the start
        self._last_token: int | None = None
        self._term_ended_s: float | None = None
        self._child_started = False
        self._metrics.live.members[self._labels] = self
        election.add_listener(self._on_transition)

    def child_started(self) -> None:
        """Count one start of the leader-only command; every start after the first is a restart."""
        if self._child_started:
            self._metrics.child_restarts.labels(*self._labels).inc()
        self._child_started = True

    def _on_transition(self, t: Transition) -> None:
        self._metrics.transitions.labels(*self._labels, t.event).inc()
        if t.event == "elected":
            if t.token != self._last_token:
                self._terms_started.inc()
                self._last_token = t.token
            if self._term_ended_s is not None:
                self._failover.observe(t.monotonic_s - self._term_ended_s)
                self._term_ended_s = None
        elif t.event in _TERM_ENDED:
            self._term_ended_s = t.monotonic_s

    def _add_live_samples(self, families: _LiveFamilies) -> None:
        e = self.election
        labels = list(self._labels)
        families.is_leader.add_metric(labels, float(e.is_leader))
        try:
            session = e.session
        except ElectionError:  # not started yet: no session to report on
            session = None
        current = session.state if session is not None else None
        for state in SessionState:
            families.connection_state.add_metric([*labels, state.value], float(state is current))
        if session is not None:
            families.lease_remaining.add_metric(labels, session.lease_remaining_s())
            sent = session.zk.last_answered_send
            if sent is not None:
                families.last_answer_age.add_metric(labels, time.monotonic() - sent)
        if self._child_running is not None:
            families.child_running.add_metric(labels, float(self._child_running()))


class _LiveFamilies:
    """The scrape-time gauges of one scrape, filled in by every election of the registry."""

    def __init__(self) -> None:
        self.is_leader = GaugeMetricFamily(
            "election_is_leader",
            "1 while this participant leads with an unexpired lease (checked at scrape time), else 0.",
            labels=_LABELS,
        )
        self.connection_state = GaugeMetricFamily(
            "election_connection_state",
            "1 for the current state of this participant's ZooKeeper session "
            "(connecting, connected, suspended, lost, closed), 0 for the others.",
            labels=(*_LABELS, "state"),
        )
        self.last_answer_age = GaugeMetricFamily(
            "election_zookeeper_last_answer_age_seconds",
            "Seconds since the send of the last request ZooKeeper answered on this participant's "
            "connection; the lease is renewed from that send.",
            labels=_LABELS,
            unit="seconds",
        )
        self.lease_remaining = GaugeMetricFamily(
            "election_lease_remaining_seconds",
            "Seconds left of the session's lease: how much longer this participant may lead "
            "without hearing from ZooKeeper (0 when expired).",
            labels=_LABELS,
            unit="seconds",
        )
        self.child_running = GaugeMetricFamily(
            "election_child_running",
            "1 while the leader-only command runs, else 0.",
            labels=_LABELS,
        )

    def families(self) -> list[Metric]:
        return [
            self.is_leader,
            self.connection_state,
            self.last_answer_age,
            self.lease_remaining,
            self.child_running,
        ]


class _LiveCollector:
    """A custom collector for the values that must be read at scrape time."""

    def __init__(self) -> None:
        # Weak: an election that is dropped leaves the scrape, and no member may keep the
        # registry (a key of _RegistryMetrics._by_registry) alive.
        self.members: WeakValueDictionary[tuple[str, str], ElectionMetrics] = WeakValueDictionary()

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
            "election_transitions",
            "Transitions of this participant's election, by event (joined, elected, revoked, "
            "suspended, session_lost, ...).",
            (*_LABELS, "event"),
            registry=registry,
        )
        self.terms_started = Counter(
            "election_terms_started",
            "Terms of leadership this participant started: elections with a new token "
            "(leadership resumed after a brief suspension keeps its term).",
            _LABELS,
            registry=registry,
        )
        self.failover = Histogram(
            "election_failover_seconds",
            "Seconds from the end of the previous term as this participant saw it (the node it "
            "waited on gone, its own revocation or session loss) to its election; excludes the "
            "time ZooKeeper takes to expire a crashed leader's session.",
            _LABELS,
            buckets=FAILOVER_BUCKETS_S,
            unit="seconds",
            registry=registry,
        )
        self.child_restarts = Counter(
            "election_child_restarts",
            "Starts of the leader-only command after its first start in this process.",
            _LABELS,
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
