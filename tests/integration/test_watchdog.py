"""The systemd watchdog against real daemons: pinged through a ZooKeeper outage, withheld when the
daemon itself is broken (its event loop blocked, its lifeline guardian dead).

The test plays systemd's side of the notify socket (``NotifySocket``); a real systemd would abort
the daemon once no ``WATCHDOG=1`` came for ``WatchdogSec``. Like systemd, it keeps reading the
socket: waits are on notifications, and the daemon's log is read once they have come, since a
full socket queue would drop the daemon's datagrams.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _daemons import Daemons, NotifyMessage, NotifySocket, daemon_environment

from election_daemon.testing import ZooKeeperEnsemble

FAULT_SITE = Path(__file__).parent / "_fault_site"
WATCHDOG_S = 2.0
"""WatchdogSec: the daemon pings every second; systemd would act on a gap over 2 s."""
BLOCK_S = 4.0


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with Daemons() as started:
        yield started
        print(started.describe())


def _environment(notify: NotifySocket, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": str(int(WATCHDOG_S * 1_000_000)), **extra}


def _next_ping(notify: NotifySocket, timeout_s: float) -> NotifyMessage:
    return notify.wait_for("WATCHDOG", start=len(notify.messages), timeout_s=timeout_s)


def _pings_during(notify: NotifySocket, seconds: float) -> list[NotifyMessage]:
    """Every WATCHDOG=1 received over the next ``seconds`` (read as it comes)."""
    deadline = time.monotonic() + seconds
    pings = []
    while (remaining := deadline - time.monotonic()) > 0:
        with contextlib.suppress(AssertionError):  # none in the time left
            pings.append(_next_ping(notify, remaining))
    return pings


@pytest.mark.timeout(90)
def test_the_watchdog_pings_through_a_zookeeper_outage_and_stops_when_the_event_loop_is_blocked(
    daemons: Daemons, zk_single: ZooKeeperEnsemble, zk_path: str, tmp_path: Path
) -> None:
    python_path = f"{FAULT_SITE}{os.pathsep}{daemon_environment()['PYTHONPATH']}"
    with NotifySocket(tmp_path / "notify") as notify:
        daemon = daemons.start(
            zk_single.hosts,
            zk_path,
            identity="watched",
            env=_environment(notify, PYTHONPATH=python_path, ELECTION_TEST_BLOCK_S=f"{BLOCK_S:g}"),
        )
        notify.wait_for("READY", timeout_s=30)
        notify.wait_for("STATUS", lambda text: text.startswith("leading"), timeout_s=30)
        _next_ping(notify, WATCHDOG_S)

        # ZooKeeper goes away for good: the lease runs out, leadership ends, the pings go on.
        zk_single.servers[0].kill()
        outage = notify.wait_for(
            "STATUS", lambda text: "lease expired" in text, start=len(notify.messages), timeout_s=20
        )
        assert "; ZooKeeper session " in outage.fields["STATUS"], outage.fields
        previous = _next_ping(notify, WATCHDOG_S)
        until = time.monotonic() + 3 * WATCHDOG_S
        while previous.received_s < until:
            previous = _next_ping(notify, WATCHDOG_S)  # within WatchdogSec each time, or fails here
        assert daemon.returncode is None
        assert [e["reason"] for e in daemon.events("revoked")] == ["lease_expired"]
        since = notify.messages[notify.messages.index(outage) :]
        still = [m.fields["STATUS"] for m in since if "STATUS" in m.fields]
        assert len(still) >= 3 and all("ZooKeeper session" in text for text in still), still

        # Its event loop blocked (a callback that never returns, here a signal handler that
        # sleeps): no ping until it runs again, much later than systemd would wait.
        _next_ping(notify, WATCHDOG_S)
        blocked_at = time.monotonic()
        os.kill(daemon.pid, signal.SIGUSR2)
        resumed = _next_ping(notify, BLOCK_S + WATCHDOG_S)
        assert resumed.received_s - blocked_at >= BLOCK_S - 0.5
        late = daemon.wait_for("systemd_watchdog_late")
        assert late["level"] == "warning"
        assert late["late_s"] >= BLOCK_S - WATCHDOG_S / 2 - 0.5
        assert late["watchdog_interval_s"] == WATCHDOG_S
        assert daemon.returncode is None


def _lifeline_of(pid: int) -> int:
    """The daemon's guardian: its child process named ``lifeline``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                if ppid == pid and comm == "lifeline":
                    return int(entry.name)
    raise AssertionError(f"daemon {pid} has no lifeline guardian")


@pytest.mark.timeout(60)
def test_the_watchdog_stops_when_the_lifeline_guardian_dies(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    with NotifySocket(tmp_path / "notify") as notify:
        daemon = daemons.start(
            zk_hosts, zk_path, identity="guarded", command=["sleep", "600"], env=_environment(notify)
        )
        notify.wait_for("STATUS", lambda text: text.startswith("leading"), timeout_s=30)
        _next_ping(notify, WATCHDOG_S)
        daemon.wait_for("child_started")
        guardian = _lifeline_of(daemon.pid)
        os.kill(guardian, signal.SIGKILL)
        withheld = daemon.wait_for("systemd_watchdog_withheld", timeout_s=WATCHDOG_S * 2)
        assert withheld["level"] == "error"
        assert f"lifeline guardian {guardian} is gone" in withheld["reason"]
        _pings_during(notify, WATCHDOG_S / 2)  # any sent before the guardian's death was seen
        assert _pings_during(notify, 2 * WATCHDOG_S) == []
        assert daemon.returncode is None
