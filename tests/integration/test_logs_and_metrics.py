"""What a real daemon logs and exports around a real outage: levels, still_disconnected, the
fields that let each line be read alone, and metrics with stable labels only."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _daemons import Daemons, LeaderChild
from prometheus_client.parser import text_string_to_metric_families

from election_daemon.testing import TcpProxy

T = 2.0
"""Session timeout of every daemon here: still_disconnected comes every max(T/3, 1 s)."""

SLACK_S = 2.0
"""Added to latency bounds: a loaded 2-core machine runs other test suites at the same time."""

LOSS_REASONS = ("lease_expired", "connection_lost")

# The labels a series may have: none of them carries the identity (host:pid by default),
# except the participant's info series, which is there for it.
STABLE_LABELS = {"path", "event", "state", "code", "stopped_by_daemon", "hook", "outcome", "le"}


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with Daemons() as started:
        yield started
        print(started.describe())  # shown only if the test failed


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.timeout(60)
def test_an_outage_reads_well_in_the_log_and_the_metrics(
    daemons: Daemons,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    tcp_proxy: Callable[[str, int], TcpProxy],
) -> None:
    host, port = zk_hosts.split(",", maxsplit=1)[0].rsplit(":", 1)
    proxy = tcp_proxy(host, int(port))
    child = LeaderChild(tmp_path / "a")
    a = daemons.start(
        proxy.address, zk_path, identity="a", options=["--http", "127.0.0.1:0"], command=child.command()
    )
    connected = a.wait_for("connected")
    assert (connected["server"], connected["session_timeout_s"]) == (proxy.address, T)
    elected = a.wait_for("elected")
    assert {"previous_id", "previous_token"} <= elected.keys()
    assert {"previous_id", "previous_token", "failover_s"} <= a.wait_for("term_recorded").keys()
    child.wait_started()
    b = daemons.start(zk_hosts, zk_path, identity="b")
    assert "leader_id" in b.wait_for("joined")
    url = a.wait_for("http_listening")["url"]

    proxy.cut()
    # Nothing else may happen for seconds: the outage says so itself, at warning.
    still = a.wait_for("still_disconnected", timeout_s=T + SLACK_S)
    assert still["level"] == "warning"
    assert still["servers"] == [proxy.address]
    assert still["reason"] in LOSS_REASONS
    assert 0.9 <= still["elapsed_s"] <= T + SLACK_S
    revoked = a.wait_for("revoked", timeout_s=2 * T + SLACK_S)
    assert revoked["level"] == "warning" and revoked["reason"] in LOSS_REASONS
    assert revoked["token"] == elected["token"]
    assert 0 < revoked["term_s"] < 60
    stopped = a.wait_for("child_stopped", timeout_s=T + SLACK_S)
    assert (stopped["reason"], stopped["token"]) == (revoked["reason"], revoked["token"])
    b.wait_for("elected", timeout_s=3 * T + SLACK_S)
    # And again while it lasts, counting from the same start.
    later = a.wait_for("still_disconnected", lambda e: e["elapsed_s"] > still["elapsed_s"] + 0.5)
    assert later["servers"] == [proxy.address] and later["reason"] == still["reason"]

    found = scrape(url)
    assert not [name for name, _ in found if name.endswith("_created")]
    for name, labels in found:
        if name.startswith("election_daemon_") and not name.endswith("_info"):
            assert {k for k, _ in labels} <= STABLE_LABELS, (name, labels)
    assert found["election_daemon_participant_info", frozenset({("path", zk_path), ("id", "a")})] == 1
    path = ("path", zk_path)
    assert found["election_daemon_transitions_total", frozenset({path, ("event", "revoked")})] == 1
    assert found["election_daemon_is_leader", frozenset({path})] == 0
    exits = [
        value
        for (name, labels), value in found.items()
        if name == "election_daemon_command_exits_total" and ("stopped_by_daemon", "true") in labels
    ]
    assert exits == [1]
