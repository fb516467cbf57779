"""SystemdNotifier against a real AF_UNIX datagram socket, playing systemd's side."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import LogCapture

from election_daemon.daemon.systemd import SystemdNotifier

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
