"""The HTTP endpoints and the metrics of real elections on a real ZooKeeper, over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from _waits import eventually
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from election_daemon import ConfigError, Election, ElectionState
from election_daemon.daemon.endpoints import Endpoints, start_endpoints
from election_daemon.daemon.metrics import ElectionMetrics
from election_daemon.testing import TcpProxy

T = 2.0  # session timeout for these tests

ROUTES = ("/liveness", "/readiness", "/health", "/leader", "/follower", "/status", "/metrics")

SLACK_S = 1.0
"""Added to latency bounds: a loaded 2-core machine runs other test suites at the same time."""


@dataclass
class View:
    """What the daemon gives the endpoints, for an in-process election."""

    election: Election
    metrics: ElectionMetrics
    child_pid: int | None = None

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self.metrics.registry


@dataclass
class Participant:
    """An election with its metrics and endpoints, and a client for them."""

    election: Election
    endpoints: Endpoints
    http: aiohttp.ClientSession
    view: View

    async def get(self, route: str, *, method: str = "GET") -> tuple[int, str]:
        async with self.http.request(method, self.endpoints.url + route) as response:
            return response.status, await response.text()

    async def get_json(self, route: str) -> tuple[int, Any]:
        async with self.http.get(self.endpoints.url + route) as response:
            assert response.content_type == "application/json"
            assert response.headers["Cache-Control"] == "no-store"
            body = await response.text()
            assert body.endswith("\n")
            return response.status, await response.json()

    async def status_code(self, route: str) -> int:
        async with self.http.get(self.endpoints.url + route) as response:
            return response.status


@contextlib.asynccontextmanager
async def participant(hosts: str, path: str, identity: str) -> AsyncIterator[Participant]:
    election = Election(hosts, path, identity=identity, session_timeout_s=T)
    metrics = ElectionMetrics(election)
    view = View(election, metrics)
    endpoints = await start_endpoints(view, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            await election.start()
            yield Participant(election, endpoints, http, view)
    finally:
        await election.stop()
        await endpoints.close()


def samples(text: str, *, openmetrics: bool = False) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and label set (the parser checks the format)."""
    parse = parse_openmetrics if openmetrics else text_string_to_metric_families
    return {(s.name, frozenset(s.labels.items())): s.value for family in parse(text) for s in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def metrics_once_recorded(
    p: Participant, terms: int
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``/metrics`` once ``terms`` terms are recorded: the failover is observed at ``term_recorded``,
    a round trip or two after ``elected``."""
    key = (
        "election_daemon_transitions_total",
        frozenset({"event": "term_recorded", "path": p.election.path}.items()),
    )
    deadline = time.monotonic() + 10
    while (found := samples((await p.get("/metrics"))[1])).get(key, 0) < terms:
        assert time.monotonic() < deadline, f"{terms} terms not recorded after 10 s"
        await asyncio.sleep(0.01)
    return found


async def test_every_endpoint_on_leader_and_follower(zk_hosts: str, zk_path: str) -> None:
    async with participant(zk_hosts, zk_path, "p0") as p0, participant(zk_hosts, zk_path, "p1") as p1:
        term = await p0.election.wait_for_leadership(10)
        p1.view.child_pid = os.getpid()

        assert await p0.get_json("/health") == (200, {"healthy": True, "session": "connected"})
        assert await p1.get_json("/health") == (200, {"healthy": True, "session": "connected"})
        assert await p0.get_json("/leader") == (200, {"leader": True, "token": term.token})
        assert await p1.get_json("/leader") == (503, {"leader": False, "token": None})
        assert await p0.get_json("/follower") == (
            503,
            {"follower": False, "healthy": True, "state": "leading"},
        )
        assert await p1.get_json("/follower") == (
            200,
            {"follower": True, "healthy": True, "state": "following"},
        )
        for p in (p0, p1):
            assert await p.get_json("/readiness") == await p.get_json("/health")
        assert await p0.get_json("/liveness") == (200, {"alive": True, "state": "leading"})
        assert await p1.get_json("/liveness") == (200, {"alive": True, "state": "following"})

        code, leading = await p0.get_json("/status")
        assert code == 200
        assert leading["id"] == "p0" and leading["path"] == zk_path
        assert leading["state"] == "leading" and leading["is_leader"] is True
        assert leading["term"]["token"] == term.token and leading["term"]["node"] == term.node
        assert leading["term"]["started_at"].endswith("Z")
        assert leading["leader"]["id"] == "p0" and leading["leader"]["token"] == term.token
        assert leading["session"]["state"] == "connected"
        assert leading["session"]["id"] == f"0x{p0.election.session.session_id:x}"
        assert leading["session"]["negotiated_timeout_s"] == T
        assert 0 < leading["session"]["lease_remaining_s"] <= T
        assert leading["child"] == {"running": False, "pid": None}

        code, following = await p1.get_json("/status")
        assert code == 200
        assert following["state"] == "following" and following["is_leader"] is False
        assert following["term"] is None
        assert following["node"] == p1.election.node
        assert following["leader"]["id"] == "p0"
        assert following["child"] == {"running": True, "pid": os.getpid()}

        for p in (p0, p1):
            code, text = await p.get("/metrics")
            assert code == 200
            found = samples(text)
            assert ("election_daemon_is_leader", frozenset({("path", zk_path)})) in found
            info = frozenset({("path", zk_path), ("id", p.election.identity)})
            assert found["election_daemon_participant_info", info] == 1
            # HEAD answers like GET, without a body.
            for route in ROUTES:
                get_code, _ = await p.get(route)
                assert await p.get(route, method="HEAD") == (get_code, ""), route
            assert (await p.get("/leader", method="POST"))[0] == 405


async def test_metrics_content_types(zk_hosts: str, zk_path: str) -> None:
    async with participant(zk_hosts, zk_path, "p0") as p0:
        await p0.election.wait_for_leadership(10)
        async with p0.http.get(p0.endpoints.url + "/metrics", headers={"Accept": "*/*"}) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            plain = samples(await response.text())
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        async with p0.http.get(p0.endpoints.url + "/metrics", headers={"Accept": accept}) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
            open_metrics = samples(await response.text(), openmetrics=True)
        labels = {"path": zk_path}
        assert (
            value(plain, "election_daemon_is_leader", **labels)
            == value(open_metrics, "election_daemon_is_leader", **labels)
            == 1
        )


@pytest.mark.timeout(30)
async def test_leader_endpoint_flips_within_a_second_of_a_graceful_handover(
    zk_hosts: str, zk_path: str
) -> None:
    async with participant(zk_hosts, zk_path, "p0") as p0, participant(zk_hosts, zk_path, "p1") as p1:
        await p0.election.wait_for_leadership(10)
        assert await p1.status_code("/leader") == 503
        started = time.monotonic()
        stopping = asyncio.ensure_future(p0.election.stop())
        await wait_for_code(p1, "/leader", 200, timeout_s=10)
        flipped_s = time.monotonic() - started
        await stopping
        assert await p0.status_code("/leader") == 503
        assert flipped_s < 1.0, f"/leader took {flipped_s:.3f} s to move to the next participant"
        assert (await p0.get_json("/health"))[0] == 503


@pytest.mark.timeout(60)
async def test_health_follows_a_cut_off_session_and_its_return(
    zk_hosts: str, zk_path: str, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    host, port = zk_hosts.split(",", maxsplit=1)[0].rsplit(":", 1)
    proxy = tcp_proxy(host, int(port))
    async with (
        participant(proxy.address, zk_path, "cut") as cut,
        participant(zk_hosts, zk_path, "other") as other,
    ):
        await cut.election.wait_for_leadership(10)
        assert await cut.status_code("/health") == 200
        proxy.cut()
        # The lease runs out 2T/3 after the last answered request.
        await wait_for_code(cut, "/health", 503, timeout_s=T + SLACK_S)
        assert await cut.status_code("/leader") == 503
        # Not ready, not a usable follower either, but alive: no liveness probe restarts it.
        assert await cut.status_code("/readiness") == 503
        assert await cut.status_code("/follower") == 503
        assert await cut.get_json("/liveness") == (200, {"alive": True, "state": cut.election.state.value})
        looked_up = time.monotonic()
        code, status = await cut.get_json("/status")
        assert time.monotonic() - looked_up < 1.0 + SLACK_S
        assert code == 200 and status["leader"] is None and status["state"] != "leading"
        # Its session expires at T: the other participant takes over.
        await wait_for_code(other, "/leader", 200, timeout_s=2 * T + SLACK_S)
        proxy.restore()
        await wait_for_code(cut, "/health", 200, timeout_s=3 * T + SLACK_S)
        await eventually(lambda: cut.election.state is ElectionState.FOLLOWING, timeout_s=T, what="rejoin")
        assert await cut.get_json("/health") == (200, {"healthy": True, "session": "connected"})
        assert await cut.status_code("/leader") == 503
        assert await cut.status_code("/follower") == 200
        assert await other.status_code("/leader") == 200
        assert await other.status_code("/follower") == 503


async def wait_for_code(p: Participant, route: str, code: int, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (last := await p.status_code(route)) != code:
        assert time.monotonic() < deadline, f"{route} still answers {last}, not {code}, after {timeout_s:g} s"
        await asyncio.sleep(0.01)


@pytest.mark.timeout(30)
async def test_metrics_after_a_graceful_failover(zk_hosts: str, zk_path: str) -> None:
    async with participant(zk_hosts, zk_path, "p0") as p0, participant(zk_hosts, zk_path, "p1") as p1:
        first = await p0.election.wait_for_leadership(10)
        await p0.election.stop()
        second = await p1.election.wait_for_leadership(10)
        assert second.token > first.token

        new = await metrics_once_recorded(p1, 1)
        labels = {"path": zk_path}
        assert value(new, "election_daemon_is_leader", **labels) == 1
        assert value(new, "election_daemon_transitions_total", event="elected", **labels) == 1
        assert value(new, "election_daemon_transitions_total", event="predecessor_gone", **labels) == 1
        assert value(new, "election_daemon_terms_started_total", **labels) == 1
        assert value(new, "election_daemon_failover_seconds_count", **labels) == 1
        assert 0 < value(new, "election_daemon_failover_seconds_sum", **labels) < 1.0
        assert value(new, "election_daemon_connection_state", state="connected", **labels) == 1
        assert value(new, "election_daemon_connection_state", state="suspended", **labels) == 0
        assert 0 < value(new, "election_daemon_lease_remaining_seconds", **labels) <= T
        assert 0 <= value(new, "election_daemon_zookeeper_last_answer_age_seconds", **labels) < T
        assert ("election_daemon_command_running", frozenset(labels.items())) not in new
        assert value(new, "election_daemon_term_token", **labels) == second.token
        assert value(new, "election_daemon_term_start_timestamp_seconds", **labels) == second.started_at
        assert value(new, "election_daemon_session_timeout_seconds", **labels) == T

        _, text = await p0.get("/metrics")
        old = samples(text)
        labels = {"path": zk_path}
        assert value(old, "election_daemon_is_leader", **labels) == 0
        assert value(old, "election_daemon_transitions_total", event="elected", **labels) == 1
        assert value(old, "election_daemon_transitions_total", event="revoked", **labels) == 1
        assert value(old, "election_daemon_terms_started_total", **labels) == 1
        assert value(old, "election_daemon_failover_seconds_count", **labels) == 0
        assert value(old, "election_daemon_connection_state", state="closed", **labels) == 1
        assert ("election_daemon_term_token", frozenset(labels.items())) not in old


async def test_a_lone_participant_that_resigns_counts_a_new_term_and_a_failover(
    zk_hosts: str, zk_path: str
) -> None:
    async with participant(zk_hosts, zk_path, "p0") as p0:
        first = await p0.election.wait_for_leadership(10)
        await p0.election.resign()
        second = await p0.election.wait_for_leadership(10)
        assert second.token > first.token
        found = await metrics_once_recorded(p0, 2)
        labels = {"path": zk_path}
        assert value(found, "election_daemon_transitions_total", event="elected", **labels) == 2
        assert value(found, "election_daemon_transitions_total", event="revoked", **labels) == 1
        assert value(found, "election_daemon_terms_started_total", **labels) == 2
        assert value(found, "election_daemon_failover_seconds_count", **labels) == 1


async def test_a_port_in_use_is_a_clear_error(zk_hosts: str, zk_path: str) -> None:
    async with participant(zk_hosts, zk_path, "p0") as p0:
        with pytest.raises(
            ConfigError, match=r"^--http: cannot listen on 127\.0\.0\.1:\d+: address already in use$"
        ):
            await start_endpoints(p0.view, "127.0.0.1", p0.endpoints.port)
        assert await p0.status_code("/health") == 200
