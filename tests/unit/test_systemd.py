"""SystemdNotifier and Watchdog against a real AF_UNIX datagram socket, playing systemd's side."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import LogCapture

from election_daemon.daemon.systemd import SystemdNotifier, Watchdog

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever runs these tests (systemd itself, perhaps) must not leak its own socket in."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def path_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: socket paths are limited to 107 bytes, and pytest's tmp_path is long.
    with tempfile.TemporaryDirectory(prefix="sd-") as directory:
        address = str(Path(directory) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(address)
            server.settimeout(10)
            yield server, address


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"election-daemon-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(10)
        yield server, "@" + name


@pytest.mark.parametrize("kind", ["path_socket", "abstract_socket"])
def test_notifications_arrive_as_one_datagram_each(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, log: Any
) -> None:
    server, address = request.getfixturevalue(kind)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = SystemdNotifier.from_environment(log=log)
    try:
        assert notifier.enabled
        notifier.ready()
        notifier.status("leading /election\nwith token 7")
        notifier.watchdog()
        notifier.stopping()
        notifier.notify(STATUS="handing over", EXTEND_TIMEOUT_USEC=5_000_000)
        received = [server.recv(4096) for _ in range(5)]
    finally:
        notifier.close()
    assert received == [
        b"READY=1\n",
        b"STATUS=leading /election with token 7\n",
        b"WATCHDOG=1\n",
        b"STOPPING=1\n",
        b"STATUS=handing over\nEXTEND_TIMEOUT_USEC=5000000\n",
    ]


def test_the_environment_is_unset_so_children_do_not_inherit_it(
    path_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch, log: Any
) -> None:
    _, address = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    SystemdNotifier.from_environment(log=log).close()
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC"} & set(os.environ)


def test_the_environment_can_be_kept(path_socket: tuple[socket.socket, str], log: Any) -> None:
    _, address = path_socket
    environ = {"NOTIFY_SOCKET": address}
    SystemdNotifier.from_environment(log=log, environ=environ, unset_environment=False).close()
    assert environ == {"NOTIFY_SOCKET": address}


def test_without_notify_socket_every_call_is_a_no_op(log: Any, capture: LogCapture) -> None:
    notifier = SystemdNotifier.from_environment(log=log)
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()
    assert capture.entries == []


@pytest.mark.parametrize(
    ("usec", "pid", "interval_s"),
    [
        ("2500000", None, 2.5),
        ("2500000", "self", 2.5),
        ("2500000", "1", None),  # systemd meant another process
        (None, None, None),
    ],
)
def test_watchdog_interval(usec: str | None, pid: str | None, interval_s: float | None, log: Any) -> None:
    environ = {}
    if usec is not None:
        environ["WATCHDOG_USEC"] = usec
    if pid is not None:
        environ["WATCHDOG_PID"] = str(os.getpid()) if pid == "self" else pid
    notifier = SystemdNotifier.from_environment(log=log, environ=environ)
    assert notifier.watchdog_interval_s == interval_s


@pytest.mark.parametrize("usec", ["soon", "0", "-5"])
def test_an_invalid_watchdog_interval_disables_it_with_a_warning(
    usec: str, log: Any, capture: LogCapture
) -> None:
    notifier = SystemdNotifier.from_environment(log=log, environ={"WATCHDOG_USEC": usec})
    assert notifier.watchdog_interval_s is None
    assert [entry["event"] for entry in capture.entries] == ["systemd_watchdog_invalid"]


def test_an_unsupported_address_disables_notifications(log: Any, capture: LogCapture) -> None:
    notifier = SystemdNotifier.from_environment(log=log, environ={"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert [entry["event"] for entry in capture.entries] == ["systemd_notify_unsupported"]


def test_a_failing_send_is_logged_once_and_never_raised(log: Any, capture: LogCapture) -> None:
    with tempfile.TemporaryDirectory(prefix="sd-") as directory:
        notifier = SystemdNotifier(str(Path(directory) / "nobody-listens"), watchdog_usec=None, log=log)
        try:
            notifier.ready()
            notifier.watchdog()
        finally:
            notifier.close()
    [failure] = capture.entries
    assert failure["event"] == "systemd_notify_failed"
    assert "No such file or directory" in failure["reason"]


# -- the watchdog loop -------------------------------------------------------------------------


class _Arrivals:
    """Reads ``server`` in a thread of its own, noting when each WATCHDOG=1 arrived: the event
    loop under test may be blocked, this thread is not."""

    def __init__(self, server: socket.socket) -> None:
        self.pings: list[float] = []
        self._server = server
        server.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._server.recv(4096)
            except TimeoutError:
                continue
            if data == b"WATCHDOG=1\n":
                self.pings.append(time.monotonic())

    def stop(self) -> list[float]:
        """Stop reading (after what is queued) and return the arrival times."""
        self._stop.set()
        self._thread.join(5)
        return self.pings


async def _run_for(watchdog: Watchdog, seconds: float, during: Any = None) -> None:
    task = asyncio.ensure_future(watchdog.run())
    try:
        await asyncio.sleep(0)
        if during is not None:
            during()
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_watchdog_pings_every_half_interval_while_healthy(
    path_socket: tuple[socket.socket, str], log: Any, capture: LogCapture
) -> None:
    server, address = path_socket
    notifier = SystemdNotifier(address, watchdog_usec=200_000, log=log)
    watchdog = Watchdog(notifier, interval_s=0.2, unhealthy=lambda: None, log=log)
    assert watchdog.period_s == 0.1
    arrivals = _Arrivals(server)
    await _run_for(watchdog, 0.45)
    notifier.close()
    assert 4 <= len(arrivals.stop()) <= 6
    assert capture.entries == []


async def test_an_unhealthy_daemon_gets_no_ping_and_says_why_once(
    path_socket: tuple[socket.socket, str], log: Any, capture: LogCapture
) -> None:
    server, address = path_socket
    notifier = SystemdNotifier(address, watchdog_usec=100_000, log=log)
    problems = iter(["guardian 7 is gone"] * 4 + [None] * 100)
    watchdog = Watchdog(notifier, interval_s=0.1, unhealthy=lambda: next(problems), log=log)
    arrivals = _Arrivals(server)
    started = time.monotonic()
    await _run_for(watchdog, 0.32)
    notifier.close()
    # Four silent ticks (0.2 s), then pings again once healthy.
    pings = arrivals.stop()
    assert 1 <= len(pings) <= 3
    assert pings[0] - started >= 0.15
    [withheld] = capture.entries
    assert withheld["event"] == "systemd_watchdog_withheld"
    assert withheld["log_level"] == "error"
    assert withheld["reason"].startswith("guardian 7 is gone: no more WATCHDOG=1")


async def test_a_blocked_event_loop_sends_nothing_and_is_logged_once_it_runs_again(
    path_socket: tuple[socket.socket, str], log: Any, capture: LogCapture
) -> None:
    server, address = path_socket
    notifier = SystemdNotifier(address, watchdog_usec=200_000, log=log)
    watchdog = Watchdog(notifier, interval_s=0.2, unhealthy=lambda: None, log=log)
    blocked: list[float] = []

    def block_the_loop() -> None:
        started = time.monotonic()
        time.sleep(0.5)  # the point: nothing else of the loop runs meanwhile
        blocked.append(time.monotonic() - started)

    arrivals = _Arrivals(server)
    await _run_for(watchdog, 0.25, during=lambda: asyncio.get_running_loop().call_soon(block_the_loop))
    notifier.close()
    pings = arrivals.stop()
    # A ping before the block; the next only once the loop ran again, then every 0.1 s.
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    assert max(gaps) >= blocked[0] - 0.05, gaps
    [late] = [entry for entry in capture.entries if entry["event"] == "systemd_watchdog_late"]
    assert late["log_level"] == "warning"
    # Blocked 0.5 s from the start of a 0.1 s sleep: the tick came about 0.4 s late.
    assert 0.3 <= late["late_s"] <= blocked[0]
    assert late["watchdog_interval_s"] == 0.2
    assert "the event loop was blocked" in late["reason"]
