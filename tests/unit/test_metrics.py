"""The metrics' exposition and registry sharing, on elections that are built but not started.

What the metrics say about a running election is tested against ZooKeeper in
``tests/integration/test_endpoints.py``.
"""

from __future__ import annotations

import gc
import os
import platform
import weakref
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import election_daemon
from election_daemon import Election
from election_daemon.daemon.metrics import FAILOVER_BUCKETS_S, ElectionMetrics
from election_daemon.library.events import Event
from election_daemon.library.transitions import ElectionState, Transition

HOSTS = "127.0.0.1:2181"  # never connected to: these elections are not started

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


@pytest.fixture
def no_created() -> Iterator[None]:
    """As in the daemon, which calls this once for its process; restored for other tests."""
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    yield
    prometheus_client.enable_created_metrics()  # type: ignore[no-untyped-call]


def test_an_unstarted_election_is_exported_with_no_session() -> None:
    metrics = ElectionMetrics(Election(HOSTS, "/e", identity="a"))
    found = scrape(metrics.registry)
    labels = {"path": "/e"}
    assert found[key("election_daemon_is_leader", **labels)] == 0
    assert found[key("election_daemon_participant_info", id="a", **labels)] == 1
    build = [labels for name, labels in found if name == "election_daemon_build_info"]
    assert build == [
        frozenset({("version", election_daemon.__version__), ("python", platform.python_version())})
    ]
    for state in ("connecting", "connected", "disconnected", "suspended", "lost", "closed"):
        assert found[key("election_daemon_connection_state", state=state, **labels)] == 0
    assert found[key("election_daemon_terms_started_total", **labels)] == 0
    assert found[key("election_daemon_failover_seconds_count", **labels)] == 0
    assert found[key("election_daemon_failover_seconds_bucket", le="60.0", **labels)] == 0
    names = {name for name, _ in found}
    for absent in (
        "election_daemon_lease_remaining_seconds",
        "election_daemon_zookeeper_last_answer_age_seconds",
        "election_daemon_session_timeout_seconds",
        "election_daemon_term_token",
        "election_daemon_term_start_timestamp_seconds",
    ):
        assert absent not in names
    assert not any(name.startswith(("election_daemon_command_", "election_daemon_hook_")) for name in names)


def test_every_family_is_documented_typed_prefixed_and_without_created(no_created: None) -> None:
    metrics = ElectionMetrics(Election(HOSTS, "/e", identity="a"), command_running=lambda: False)
    metrics.command_exited(0, stopped_by_daemon=False)
    metrics.hook_finished("elected", "ok")
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    assert {name: f.type for name, f in families.items()} == {
        # The text format has no info type: info series are gauges named *_info.
        "election_daemon_build_info": "gauge",
        "election_daemon_participant_info": "gauge",
        "election_daemon_is_leader": "gauge",
        "election_daemon_term_token": "gauge",
        "election_daemon_term_start_timestamp_seconds": "gauge",
        "election_daemon_connection_state": "gauge",
        "election_daemon_session_timeout_seconds": "gauge",
        "election_daemon_zookeeper_last_answer_age_seconds": "gauge",
        "election_daemon_lease_remaining_seconds": "gauge",
        "election_daemon_command_running": "gauge",
        "election_daemon_transitions": "counter",
        "election_daemon_terms_started": "counter",
        "election_daemon_failover_seconds": "histogram",
        "election_daemon_command_restarts": "counter",
        "election_daemon_command_exits": "counter",
        "election_daemon_hook_runs": "counter",
    }
    assert all(f.documentation for f in families.values())
    assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)
    buckets = [
        s.labels["le"] for s in families["election_daemon_failover_seconds"].samples if "le" in s.labels
    ]
    assert buckets == [*(str(b) for b in FAILOVER_BUCKETS_S), "+Inf"]


def test_the_default_identity_is_in_no_label_but_the_participant_info() -> None:
    election = Election(HOSTS, "/e")  # identity host:pid, new at every restart
    metrics = ElectionMetrics(election, command_running=lambda: False)
    metrics.command_exited(143, stopped_by_daemon=True)
    pid = str(os.getpid())
    for (name, labels), _ in scrape(metrics.registry).items():
        if name != "election_daemon_participant_info":
            assert not any(pid in v for _, v in labels), (name, labels)
    assert (
        scrape(metrics.registry)[key("election_daemon_participant_info", path="/e", id=election.identity)]
        == 1
    )


def transition(event: Event, *, token: int | None = 7, monotonic_s: float, **extra: Any) -> Transition:
    leading = event is Event.ELECTED
    return Transition(
        event=event,
        state=ElectionState.LEADING if leading else ElectionState.FOLLOWING,
        previous_state=ElectionState.FOLLOWING if leading else ElectionState.LEADING,
        reason=None,
        path="/e",
        id="a",
        node="/e/n",
        token=token,
        session_id=1,
        timestamp=1_000_000.0 + monotonic_s,
        monotonic_s=monotonic_s,
        **extra,
    )


def test_failover_counts_from_the_previous_terms_last_proof_of_life_when_known() -> None:
    metrics = ElectionMetrics(Election(HOSTS, "/e", identity="a"))
    listener = metrics._on_transition
    # Seen by this participant: the node it waited on went at 10.0; it leads at 10.2. But the
    # previous leader was last alive at 5.0 (then crashed; ZooKeeper expired its session).
    listener(transition(Event.PREDECESSOR_GONE, token=None, monotonic_s=10.0))
    listener(transition(Event.ELECTED, token=8, monotonic_s=10.2))
    # Observed once the term's record (read after a notification-only promotion) says so.
    assert scrape(metrics.registry)[key("election_daemon_failover_seconds_count", path="/e")] == 0
    listener(
        transition(
            Event.TERM_RECORDED,
            token=8,
            monotonic_s=10.21,
            previous_alive_at=1_000_005.0,
            elected_at=1_000_010.2,
        )
    )
    found = scrape(metrics.registry)
    assert found[key("election_daemon_failover_seconds_sum", path="/e")] == pytest.approx(5.2)
    # Unknown: from the end of the term as this participant saw it (its own revocation).
    listener(transition(Event.REVOKED, token=8, monotonic_s=20.0))
    listener(transition(Event.ELECTED, token=9, monotonic_s=20.5))
    listener(transition(Event.TERM_RECORDED, token=9, monotonic_s=20.51))
    found = scrape(metrics.registry)
    assert found[key("election_daemon_failover_seconds_count", path="/e")] == 2
    assert found[key("election_daemon_failover_seconds_sum", path="/e")] == pytest.approx(5.7)
    assert found[key("election_daemon_terms_started_total", path="/e")] == 2
    assert found[key("election_daemon_transitions_total", path="/e", event="elected")] == 2
    # The very first term of an election that saw no term end, with no previous term known.
    fresh = ElectionMetrics(Election(HOSTS, "/f", identity="a"))
    fresh._on_transition(transition(Event.ELECTED, monotonic_s=1.0))
    fresh._on_transition(transition(Event.TERM_RECORDED, monotonic_s=1.01))
    assert scrape(fresh.registry)[key("election_daemon_failover_seconds_count", path="/f")] == 0


def test_command_metrics_count_restarts_exits_and_read_running_at_scrape_time() -> None:
    running = False
    metrics = ElectionMetrics(Election(HOSTS, "/e", identity="a"), command_running=lambda: running)
    labels = {"path": "/e"}
    found = scrape(metrics.registry)
    assert found[key("election_daemon_command_running", **labels)] == 0
    assert found[key("election_daemon_command_restarts_total", **labels)] == 0
    metrics.command_started()
    running = True
    found = scrape(metrics.registry)
    assert found[key("election_daemon_command_running", **labels)] == 1
    assert found[key("election_daemon_command_restarts_total", **labels)] == 0
    metrics.command_started()
    metrics.command_started()
    metrics.command_exited(143, stopped_by_daemon=True)
    metrics.command_exited(1, stopped_by_daemon=False)
    metrics.command_exited(1, stopped_by_daemon=False)
    found = scrape(metrics.registry)
    assert found[key("election_daemon_command_restarts_total", **labels)] == 2
    exits = key("election_daemon_command_exits_total", code="1", stopped_by_daemon="false", **labels)
    assert found[exits] == 2
    exits = key("election_daemon_command_exits_total", code="143", stopped_by_daemon="true", **labels)
    assert found[exits] == 1


def test_hook_runs_by_outcome() -> None:
    metrics = ElectionMetrics(Election(HOSTS, "/e", identity="a"), command_running=lambda: False)
    for hook, outcome in (("elected", "ok"), ("elected", "ok"), ("revoked", "timeout")):
        metrics.hook_finished(hook, outcome)
    found = scrape(metrics.registry)
    assert found[key("election_daemon_hook_runs_total", path="/e", hook="elected", outcome="ok")] == 2
    assert found[key("election_daemon_hook_runs_total", path="/e", hook="revoked", outcome="timeout")] == 1


def test_elections_share_a_registry_and_a_successor_takes_over_its_series() -> None:
    registry = CollectorRegistry()
    # Held, as an application holds its elections: a dropped one leaves the scrape.
    held = [
        ElectionMetrics(Election(HOSTS, path, identity="a"), registry=registry) for path in ("/e", "/other")
    ]
    gc.collect()
    leaders = [labels for name, labels in scrape(registry) if name == "election_daemon_is_leader"]
    assert sorted(sorted(labels) for labels in leaders) == [[("path", "/e")], [("path", "/other")]]
    held[0]._on_transition(transition(Event.ELECTED, monotonic_s=1.0))
    successor = ElectionMetrics(Election(HOSTS, "/e", identity="b"), registry=registry)
    assert successor.registry is registry and held[0].registry is registry
    found = scrape(registry)
    assert len([labels for name, labels in found if name == "election_daemon_is_leader"]) == 2
    assert found[key("election_daemon_terms_started_total", path="/e")] == 1
    assert found[key("election_daemon_participant_info", path="/e", id="b")] == 1


def test_a_describing_registry_sees_the_names_and_refuses_clashes() -> None:
    registry = CollectorRegistry(auto_describe=True)
    ElectionMetrics(Election(HOSTS, "/e", identity="a"), registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("election_daemon_lease_remaining_seconds", "a clash", registry=registry)


def test_dropped_elections_leave_the_scrape_and_free_their_registry() -> None:
    shared = CollectorRegistry()
    ElectionMetrics(Election(HOSTS, "/e", identity="a"), registry=shared)
    own = ElectionMetrics(Election(HOSTS, "/e", identity="b"))
    registry = weakref.ref(own.registry)
    del own
    gc.collect()
    assert registry() is None
    assert not [name for name, _ in scrape(shared) if name == "election_daemon_is_leader"]
