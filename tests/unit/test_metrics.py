"""The metrics' exposition and registry sharing, on elections that are built but not started.

What the metrics say about a running election is tested against ZooKeeper in
``tests/integration/test_endpoints.py``.
"""

from __future__ import annotations

import gc
import weakref

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from election_daemon import Election
from election_daemon.daemon.metrics import FAILOVER_BUCKETS_S, ElectionMetrics

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


def test_an_unstarted_election_is_exported_with_no_session() -> None:
    metrics = ElectionMetrics(Election(HOSTS, "/e", identity="a"))
    found = scrape(metrics.registry)
    labels = {"path": "/e", "id": "a"}
    assert found[key("election_is_leader", **labels)] == 0
    for state in ("connecting", "connected", "suspended", "lost", "closed"):
        assert found[key("election_connection_state", state=state, **labels)] == 0
    assert found[key("election_terms_started_total", **labels)] == 0
    assert found[key("election_failover_seconds_count", **labels)] == 0
    assert found[key("election_failover_seconds_bucket", le="60.0", **labels)] == 0
    names = {name for name, _ in found}
    assert "election_lease_remaining_seconds" not in names
    assert "election_zookeeper_last_answer_age_seconds" not in names
    assert not any(name.startswith("election_child_") for name in names)


def test_every_family_is_documented_and_typed() -> None:
    metrics = ElectionMetrics(Election(HOSTS, "/e", identity="a"), child_running=lambda: False)
    text = generate_latest(metrics.registry).decode()
    # prometheus_client adds a ``<counter>_created`` gauge to counters and histograms in this format.
    families = {f.name: f for f in text_string_to_metric_families(text) if not f.name.endswith("_created")}
    assert {name: f.type for name, f in families.items()} == {
        "election_is_leader": "gauge",
        "election_connection_state": "gauge",
        "election_zookeeper_last_answer_age_seconds": "gauge",
        "election_lease_remaining_seconds": "gauge",
        "election_child_running": "gauge",
        "election_transitions": "counter",
        "election_terms_started": "counter",
        "election_failover_seconds": "histogram",
        "election_child_restarts": "counter",
    }
    assert all(f.documentation for f in families.values())
    buckets = [s.labels["le"] for s in families["election_failover_seconds"].samples if "le" in s.labels]
    assert buckets == [*(str(b) for b in FAILOVER_BUCKETS_S), "+Inf"]


def test_child_metrics_count_restarts_and_read_running_at_scrape_time() -> None:
    running = False
    metrics = ElectionMetrics(Election(HOSTS, "/e", identity="a"), child_running=lambda: running)
    labels = {"path": "/e", "id": "a"}
    found = scrape(metrics.registry)
    assert found[key("election_child_running", **labels)] == 0
    assert found[key("election_child_restarts_total", **labels)] == 0
    metrics.child_started()
    running = True
    found = scrape(metrics.registry)
    assert found[key("election_child_running", **labels)] == 1
    assert found[key("election_child_restarts_total", **labels)] == 0
    metrics.child_started()
    metrics.child_started()
    assert scrape(metrics.registry)[key("election_child_restarts_total", **labels)] == 2


def test_elections_share_a_registry_and_a_successor_takes_over_its_series() -> None:
    registry = CollectorRegistry()
    # Held, as an application holds its elections: a dropped one leaves the scrape.
    held = [
        ElectionMetrics(Election(HOSTS, path, identity=identity), registry=registry)
        for path, identity in (("/e", "a"), ("/e", "b"), ("/other", "a"))
    ]
    gc.collect()
    leaders = [labels for name, labels in scrape(registry) if name == "election_is_leader"]
    assert sorted(sorted(labels) for labels in leaders) == [
        [("id", "a"), ("path", "/e")],
        [("id", "a"), ("path", "/other")],
        [("id", "b"), ("path", "/e")],
    ]
    successor = ElectionMetrics(Election(HOSTS, "/e", identity="a"), registry=registry)
    assert successor.registry is registry and held[0].registry is registry
    leaders = [labels for name, labels in scrape(registry) if name == "election_is_leader"]
    assert len(leaders) == 3


def test_a_describing_registry_sees_the_names_and_refuses_clashes() -> None:
    registry = CollectorRegistry(auto_describe=True)
    ElectionMetrics(Election(HOSTS, "/e", identity="a"), registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("election_lease_remaining_seconds", "a clash", registry=registry)


def test_dropped_elections_leave_the_scrape_and_free_their_registry() -> None:
    shared = CollectorRegistry()
    ElectionMetrics(Election(HOSTS, "/e", identity="a"), registry=shared)
    own = ElectionMetrics(Election(HOSTS, "/e", identity="b"))
    registry = weakref.ref(own.registry)
    del own
    gc.collect()
    assert registry() is None
    assert not [name for name, _ in scrape(shared) if name == "election_is_leader"]
