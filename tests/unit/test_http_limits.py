"""HTTP limits against real servers on loopback, with raw sockets: header-read timeout, connection
cap, /status and event-stream caps, the dashboard's Host allowlist, and bind failures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from election_daemon.cli.dashboard import Dashboard
from election_daemon.daemon.endpoints import Endpoints, start_endpoints
from election_daemon.daemon.httpguard import GuardedRunner
from election_daemon.errors import ElectionError

pytestmark = pytest.mark.timeout(60)

TIMEOUT_S = 0.5
SLACK_S = 2.0  # a loaded 2-core machine
REPO = Path(__file__).resolve().parents[2]


class FakeElection:
    path = "/svc"
    identity = "a"
    state = type("S", (), {"value": "following"})()
    is_leader = False
    term = None
    node = None

    def __init__(self) -> None:
        self.release = asyncio.Event()

    @property
    def session(self) -> Any:
        raise ElectionError("not started")

    async def leader(self) -> Any:
        await self.release.wait()
        return None


class FakeView:
    def __init__(self) -> None:
        self.election = FakeElection()
        self.metrics_registry = CollectorRegistry()
        self.child_pid = None


@contextlib.asynccontextmanager
async def endpoints(max_connections: int = 64) -> AsyncIterator[tuple[Endpoints, FakeView]]:
    view = FakeView()
    served = await start_endpoints(
        view,  # type: ignore[arg-type]
        "127.0.0.1",
        0,
        max_connections=max_connections,
        header_timeout_s=TIMEOUT_S,
    )
    try:
        yield served, view
    finally:
        view.election.release.set()
        await served.close()


async def closed_within(reader: asyncio.StreamReader, timeout_s: float) -> tuple[float, bytes]:
    """Read until EOF; return how long it took and what came."""
    started = time.monotonic()
    data = b""
    async with asyncio.timeout(timeout_s):
        while chunk := await reader.read(65536):
            data += chunk
    return time.monotonic() - started, data


async def poll(condition: Any, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - state of another component, no event to wait on
            await asyncio.sleep(0.01)


async def connected(server: Any, count: int) -> None:
    await poll(lambda: len(server.connections) >= count)


async def test_a_silent_connection_is_closed_after_the_header_timeout() -> None:
    async with endpoints() as (served, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        took, data = await closed_within(reader, TIMEOUT_S + SLACK_S)
        assert data == b""
        assert took >= TIMEOUT_S * 0.8
        writer.close()


async def test_headers_sent_slowly_are_cut_off() -> None:
    async with endpoints() as (served, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for i in range(100):
                    writer.write(b"X-%d: y\r\n" % i)
                    await writer.drain()
                    await asyncio.sleep(0.1)

        trickler = asyncio.create_task(trickle())
        took, data = await closed_within(reader, TIMEOUT_S + SLACK_S)
        trickler.cancel()
        assert b"200" not in data and b"503" not in data
        assert took < TIMEOUT_S + SLACK_S
        writer.close()


async def test_a_prompt_request_is_served_and_keep_alive_ends_at_the_timeout() -> None:
    async with endpoints() as (served, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 503")  # not started: unhealthy, but answered
        _, rest = await closed_within(reader, TIMEOUT_S + SLACK_S)
        assert b'"healthy": false' in rest
        writer.close()


async def test_one_connection_too_many_gets_503_and_is_closed() -> None:
    async with endpoints(max_connections=3) as (served, _):
        server = served._runner.server
        assert server is not None
        held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(3)]
        await connected(server, 3)
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        took, data = await closed_within(reader, 5)
        assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert took < TIMEOUT_S  # at once, not at the header timeout
        writer.close()
        # Once the held ones are gone, connections are served again.
        for _, w in held:
            w.close()
        await poll(lambda: not server.connections)
        async with aiohttp.ClientSession() as http, http.get(served.url + "/health") as response:
            assert response.status == 503
            assert (await response.json())["healthy"] is False


async def test_status_lookups_in_flight_are_capped() -> None:
    async with endpoints() as (served, view), aiohttp.ClientSession() as http:

        async def status() -> tuple[int, Any]:
            async with http.get(served.url + "/status") as response:
                return response.status, await response.json()

        slow = [asyncio.create_task(status()) for _ in range(8)]
        await asyncio.sleep(0.2)
        code, body = await asyncio.wait_for(status(), 0.9)  # before the 1 s lookup timeout
        assert code == 503
        assert "too many" in body["error"]
        view.election.release.set()
        assert all(code == 200 for code, _ in await asyncio.gather(*slow))


# -- the dashboard -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def dashboard_server(
    dashboard: Dashboard, max_connections: int = 64
) -> AsyncIterator[tuple[str, GuardedRunner]]:
    runner = GuardedRunner(
        dashboard.app(), max_connections=max_connections, header_timeout_s=TIMEOUT_S, access_log=None
    )
    await runner.setup()
    from aiohttp import web

    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", runner
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("localhost", 200),
        ("LOCALHOST.:{port}", 200),
        ("[::1]:{port}", 200),
        ("10.1.2.3", 200),
        ("dash.example.com:{port}", 200),
        ("app.localhost:{port}", 200),
        ("evil.example:{port}", 403),
        ("127.0.0.1.evil.example", 403),
        ("localhost.evil.example", 403),
        ("[::1", 403),
        ("", 403),
    ],
)
async def test_the_dashboard_answers_only_to_its_own_names(host: str, status: int) -> None:
    dashboard = Dashboard("/svc", allowed_hosts=["dash.example.com"])
    async with dashboard_server(dashboard) as (url, _):
        port = url.rpartition(":")[2]
        headers = {"Host": host.format(port=port)}
        async with aiohttp.ClientSession() as http:
            for route in ("/", "/api/state", "/dashboard.js"):
                async with http.get(url + route, headers=headers) as response:
                    assert response.status == status, (route, host)


async def test_event_streams_are_capped_and_outlive_the_header_timeout() -> None:
    dashboard = Dashboard("/svc", max_streams=2)
    async with dashboard_server(dashboard) as (url, _), aiohttp.ClientSession() as http:
        first = await http.get(url + "/events")
        second = await http.get(url + "/events")
        assert (first.status, second.status) == (200, 200)
        async with http.get(url + "/events") as third:
            assert third.status == 503
        # An open stream is not a slow request: it is not cut at the header timeout.
        await first.content.readline()
        await asyncio.sleep(TIMEOUT_S * 3)
        dashboard._notify()
        async with asyncio.timeout(10):
            while not (line := await first.content.readline()).startswith(b"data: "):
                pass
        assert line.startswith(b"data: {")
        second.close()
        await poll(lambda: dashboard._streams <= 1)
        async with http.get(url + "/events") as again:
            assert again.status == 200
        first.close()


async def test_the_dashboard_caps_connections_and_times_out_silent_ones() -> None:
    dashboard = Dashboard("/svc")
    async with dashboard_server(dashboard, max_connections=2) as (url, runner):
        port = int(url.rpartition(":")[2])
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await connected(runner.server, 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        _, data = await closed_within(reader, 5)
        assert data.startswith(b"HTTP/1.1 503")
        assert runner.refused == 1
        writer.close()
        for r, w in held:
            _, data = await closed_within(r, TIMEOUT_S + SLACK_S)
            assert data == b""
            w.close()


# -- bind failures -----------------------------------------------------------------------------


def run_daemon(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELECTION_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "election_daemon", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [("127.0.0.1:{busy}", "address already in use"), ("192.0.2.1:0", "cannot assign requested address")],
)
def test_a_daemon_that_cannot_listen_says_so_in_one_line(address: str, reason: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        http = address.format(busy=busy.getsockname()[1])
        done = run_daemon("--hosts", "127.0.0.1:1", "--path", "/svc", "--log-format", "json", "--http", http)
    assert done.returncode == 2
    assert done.stderr == f"election-daemon: error: --http: cannot listen on {http}: {reason}\n"
    assert "Traceback" not in done.stdout
