"""The dashboard against real ZooKeeper: its HTTP API, its event stream, and its page in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _daemons import DaemonProcess, Daemons, run_daemon
from _elections import recorded_leadership, running

from election_daemon import Election

T = 2.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_BROWSER = "ELECTION_DAEMON_REQUIRE_BROWSER"
_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
)
_POLL_S = 0.05


def make(hosts: str, path: str, n: int) -> list[Election]:
    return [
        Election(hosts, path, identity=f"p{i}", data={"addr": f"10.0.0.{i}:80"}, session_timeout_s=T)
        for i in range(n)
    ]


async def start_dashboard(daemons: Daemons, hosts: str, path: str) -> tuple[DaemonProcess, str]:
    """A dashboard process on a free port, and its URL once it serves."""
    dashboard = daemons.start_args(
        [
            "dashboard",
            "--hosts",
            hosts,
            "--path",
            path,
            "--listen",
            "127.0.0.1:0",
            "--session-timeout",
            f"{T:g}",
        ],
        name="dashboard",
    )
    line = await asyncio.to_thread(dashboard.wait_for_line, lambda s: "http://" in s, timeout_s=30)
    match = re.search(r"http://\S+/", line)
    assert match is not None, line
    return dashboard, match.group()


async def wait_until(probe: Any, expected: Any, *, timeout_s: float, what: str) -> None:
    """Poll the coroutine function ``probe`` until it returns ``expected``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while (last := await probe()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}: last saw {last!r}")
        await asyncio.sleep(_POLL_S)


class EventStream:
    """The ``data:`` events of a server-sent event stream, parsed as JSON."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(20):
            while True:
                line = (await self.response.content.readline()).decode()
                if line.startswith("data: "):
                    event: dict[str, Any] = json.loads(line[len("data: ") :])
                    return event

    async def until(self, predicate: Any) -> dict[str, Any]:
        while not predicate(event := await self.next()):
            pass
        return event


async def test_dashboard_api_and_event_stream_follow_a_failover(zk_hosts: str, zk_path: str) -> None:
    with Daemons() as daemons:
        async with running(make(zk_hosts, zk_path, 2)) as es, aiohttp.ClientSession() as http:
            term0 = await recorded_leadership(es[0])
            dashboard, url = await start_dashboard(daemons, zk_hosts, zk_path)
            async with http.get(url) as page:
                assert page.status == 200 and page.content_type == "text/html"
                assert "script-src 'self'" in page.headers["Content-Security-Policy"]
                html = await page.text()
            assert '<script src="dashboard.js"' in html and "://" not in html  # nothing from elsewhere
            async with http.get(f"{url}api/state") as response:
                state = await response.json()
            assert state["path"] == zk_path and state["connected"] is True
            assert state["leader"]["id"] == "p0" and state["leader"]["token"] == term0.token
            assert [p["id"] for p in state["participants"]] == ["p0", "p1"]
            assert state["history"] == []
            async with http.get(f"{url}events") as response:
                assert response.content_type == "text/event-stream"
                events = EventStream(response)
                first = await events.next()
                assert first["leader"]["id"] == "p0"
                await es[0].stop()
                term1 = await es[1].wait_for_leadership(10)
                after = await events.until(lambda e: e["leader"] is not None and e["leader"]["id"] == "p1")
            assert after["leader"]["token"] == term1.token
            # p0 -> p1 at once, or p0 -> nobody -> p1 if the dashboard read between p0's end and
            # p1's recorded term (p1 leads only once it has taken over).
            history = sorted(after["history"], key=lambda c: c["time"])
            left, arrived = history[0], history[-1]
            assert len(history) in (1, 2)
            assert left["previous"]["id"] == "p0" and left["previous"]["token"] == term0.token
            assert left["reason"] == "stopped"
            assert arrived["leader"]["id"] == "p1" and arrived["token"] == term1.token
            if len(history) == 1:
                assert arrived["leaderless_s"] == 0.0
            else:
                assert left["leader"] is None and arrived["previous"] is None
                assert arrived["leaderless_s"] is not None and arrived["leaderless_s"] >= 0
        dashboard.terminate()
        assert await asyncio.to_thread(dashboard.wait, 15) == 0
        assert dashboard.stderr == ""


async def test_dashboard_refuses_a_bad_listen_address(zk_hosts: str, zk_path: str) -> None:
    done = await asyncio.to_thread(
        run_daemon, ["dashboard", "--hosts", zk_hosts, "--path", zk_path, "--listen", "localhost"]
    )
    assert done.returncode == 2
    assert done.stderr.startswith("election-daemon: error: --listen:") and done.stderr.count("\n") == 1


async def test_dashboard_that_cannot_listen_says_so_in_one_line(zk_hosts: str, zk_path: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        done = await asyncio.to_thread(
            run_daemon, ["dashboard", "--hosts", zk_hosts, "--path", zk_path, "--listen", listen]
        )
    assert done.returncode == 2
    assert (
        done.stderr
        == f"election-daemon: error: --listen: cannot listen on {listen}: address already in use\n"
    )


async def test_dashboard_refuses_a_bad_allow_host(zk_hosts: str, zk_path: str) -> None:
    done = await asyncio.to_thread(
        run_daemon,
        [
            "dashboard",
            "--hosts",
            zk_hosts,
            "--path",
            zk_path,
            "--listen",
            "127.0.0.1:0",
            "--allow-host",
            "a b",
        ],
    )
    assert done.returncode == 2
    assert done.stderr.startswith("election-daemon: error: --allow-host:") and done.stderr.count("\n") == 1


# -- in a real browser -----------------------------------------------------------------


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"{CHROMIUM} is missing and {REQUIRE_BROWSER} is set: apt-get install -y chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium; set {REQUIRE_BROWSER} to fail instead)")


class Chromium:
    """Headless Chromium showing one URL, driven over the DevTools protocol."""

    def __init__(self, url: str, profile: Path) -> None:
        self.url = url
        self.profile = profile
        self.log_path = profile.with_suffix(".log")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [CHROMIUM, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                # A zone far from UTC: the page must show UTC all the same.
                env={**os.environ, "TZ": "Asia/Kolkata"},
            )
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._ids = 0
        self.events: list[dict[str, Any]] = []
        """DevTools events received while waiting for answers, oldest first."""

    async def connect(self, http: aiohttp.ClientSession, *, timeout_s: float = 60.0) -> None:
        """Find the DevTools port Chromium chose, then the page showing our URL."""
        deadline = time.monotonic() + timeout_s
        port_file = self.profile / "DevToolsActivePort"
        while True:
            assert self.process.poll() is None, f"chromium exited:\n{self.log_tail()}"
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError, aiohttp.ClientError):
                port = int(port_file.read_text().splitlines()[0])
                async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                pages = [t for t in targets if t["type"] == "page" and t["url"].startswith(self.url)]
                if pages:
                    self._socket = await http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
                    return
            assert time.monotonic() < deadline, f"no DevTools page for {self.url}:\n{self.log_tail()}"
            await asyncio.sleep(_POLL_S)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method; its result. Events that come meanwhile go to ``events``."""
        assert self._socket is not None
        self._ids += 1
        await self._socket.send_json({"id": self._ids, "method": method, "params": params})
        async with asyncio.timeout(20):
            while True:
                message = await self._socket.receive_json()
                if message.get("id") == self._ids:
                    assert "error" not in message, message["error"]
                    result: dict[str, Any] = message["result"]
                    return result
                if "method" in message:
                    self.events.append(message)

    async def event(self, method: str, *, timeout_s: float = 20.0) -> dict[str, Any]:
        """The params of the next DevTools event ``method`` (the oldest not yet taken)."""
        assert self._socket is not None
        async with asyncio.timeout(timeout_s):
            while True:
                for message in self.events:
                    if message["method"] == method:
                        self.events.remove(message)
                        params: dict[str, Any] = message["params"]
                        return params
                message = await self._socket.receive_json()
                if "method" in message:
                    self.events.append(message)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def text(self, selector: str) -> str | None:
        value = await self.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent ?? null")
        return None if value is None else str(value)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.process.wait, 10)


@pytest.mark.timeout(120)
async def test_dashboard_page_shows_the_leader_and_the_failover_in_chromium(
    zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    _require_chromium()
    with Daemons() as daemons:
        async with running(make(zk_hosts, zk_path, 2)) as es, aiohttp.ClientSession() as http:
            term0 = await recorded_leadership(es[0])
            _dashboard, url = await start_dashboard(daemons, zk_hosts, zk_path)
            browser = Chromium(url, tmp_path / "chromium")
            try:
                await browser.connect(http)

                async def leader() -> tuple[str | None, str | None]:
                    return await browser.text("#leader-id"), await browser.text("#leader-token")

                # Before its first data the page says it is connecting: no red "no leader".
                await browser.call("Fetch.enable", patterns=[{"urlPattern": "*/events*"}])
                await browser.call("Page.reload", ignoreCache=True)
                held = await browser.event("Fetch.requestPaused")
                connecting = await browser.evaluate(
                    "[document.getElementById('leader-card').className,"
                    " ...['#leader-id', '#connection'].map(s => document.querySelector(s).textContent)]"
                )
                assert connecting == ["pending", "connecting…", "connecting"]
                await browser.call("Fetch.continueRequest", requestId=held["requestId"])
                await browser.call("Fetch.disable")
                await wait_until(leader, ("p0", str(term0.token)), timeout_s=30, what="p0 on the page")
                rows = await browser.evaluate(
                    "[...document.querySelectorAll('#participants tbody tr')]"
                    ".map(r => [...r.cells].map(c => c.textContent))"
                )
                assert [row[1:4] for row in rows] == [
                    ["p0", "native", str(term0.token)],
                    ["p1", "native", ""],  # a follower holds no token
                ]
                assert rows[0][0] == "★" and rows[0][6] == '{"addr":"10.0.0.0:80"}'
                assert await browser.text("#connection") == "live"
                # p0 led before the dashboard came: ZooKeeper only tells when its node was made.
                assert (await browser.text("#leader-for") or "").startswith("at most ")

                await es[0].stop()
                term1 = await es[1].wait_for_leadership(10)
                await wait_until(leader, ("p1", str(term1.token)), timeout_s=20, what="p1 on the page")
                assert re.fullmatch(r"\d+\.\d s", await browser.text("#leader-for") or ""), "seen takeover"

                async def history() -> list[list[str]]:
                    rows: list[list[str]] = await browser.evaluate(
                        "[...document.querySelectorAll('#history tbody tr')]"
                        ".map(r => [...r.cells].map(c => c.textContent))"
                    )
                    return [row[1:5] for row in rows]

                async def failover_shown() -> bool:
                    rows = await history()
                    return bool(rows) and rows[0][1:3] == ["p1", str(term1.token)]

                await wait_until(failover_shown, True, timeout_s=20, what="the failover in the history")
                # Newest first: p0 -> p1 at once, or p0 -> no leader -> p1 if the dashboard read
                # between p0's end and p1's recorded term.
                rows = await history()
                if rows[0][0] == "no leader":
                    assert re.fullmatch(r"\d+\.\d{3} s", rows[0][3]), rows
                    assert rows[1] == [f"p0 ({term0.token})", "no leader", "", ""], rows
                else:
                    assert rows[0] == [f"p0 ({term0.token})", "p1", str(term1.token), "direct"], rows
                # In ISO 8601 UTC like the logs, whatever the browser's zone and locale.
                when = await browser.text("#history tbody tr td") or ""
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", when), when
                seen = datetime.fromisoformat(when).timestamp()
                assert abs(seen - time.time()) < 60
            finally:
                await browser.close()
