"""The systemd notify protocol (sd_notify): READY, STATUS, WATCHDOG and STOPPING datagrams,
and the watchdog loop that decides when WATCHDOG=1 is deserved.

Hand-written because it is tiny: newline-separated ``KEY=value`` assignments in one datagram
to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace). systemd tells the sender by its credentials, so with ``NotifyAccess=main`` only the
daemon's own process is heard. Without ``$NOTIFY_SOCKET`` every call is a no-op; a failed send
is logged once and never raised, since the daemon's work matters more than its reports.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, MutableMapping

from election_daemon.daemon.eventlog import EventLog
from election_daemon.library.events import Event

__all__ = ["SystemdNotifier", "Watchdog"]

_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class SystemdNotifier:
    """Sends state notifications to the service manager.

    :param address: the socket address: an absolute path, ``@name`` for an abstract socket,
        or ``None`` to send nothing.
    :param watchdog_usec: the watchdog interval systemd expects pings within, or ``None``.
    :param log: a structlog-style logger for the one ``systemd_notify_failed`` event.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None, log: EventLog) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._log = log
        self._socket: socket.socket | None = None
        self._failure_logged = False

    @classmethod
    def from_environment(
        cls,
        *,
        log: EventLog,
        environ: MutableMapping[str, str] | None = None,
        unset_environment: bool = True,
    ) -> SystemdNotifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from ``environ``.

        The watchdog counts only if ``WATCHDOG_PID`` is unset or is this process's pid.
        ``unset_environment`` removes the three variables, as sd_notify's flag of that name does,
        so that the leader-only command and the hooks, which inherit the environment, do not
        believe they are the service; with ``NotifyAccess=main`` systemd would ignore them anyway.

        :param environ: defaults to :data:`os.environ`.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and not address.startswith(("/", "@")):
            log.warning(
                Event.SYSTEMD_NOTIFY_UNSUPPORTED, reason=f"NOTIFY_SOCKET={address!r} is not a unix socket"
            )
            address = None
        watchdog_usec = _watchdog_usec(env, log)
        if unset_environment:
            for name in _ENVIRONMENT:
                env.pop(name, None)
        return cls(address, watchdog_usec=watchdog_usec, log=log)

    @property
    def enabled(self) -> bool:
        """True if there is a notify socket to send to."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """The watchdog interval in seconds, or ``None`` when the watchdog is off.

        Ping (:meth:`watchdog`) at half of it, and only while the daemon is healthy.
        """
        return None if self._watchdog_usec is None else self._watchdog_usec / 1_000_000

    def ready(self) -> None:
        """Startup is finished (``READY=1``): ``Type=notify`` units count as started from now."""
        self.notify(READY=1)

    def status(self, text: str) -> None:
        """A one-line status for ``systemctl status`` (``STATUS=``)."""
        self.notify(STATUS=text)

    def watchdog(self) -> None:
        """Keep-alive ping (``WATCHDOG=1``)."""
        self.notify(WATCHDOG=1)

    def stopping(self) -> None:
        """Shutdown has begun (``STOPPING=1``)."""
        self.notify(STOPPING=1)

    def notify(self, **fields: str | int) -> None:
        """Send ``KEY=value`` assignments in one datagram, e.g. ``notify(READY=1, STATUS="up")``.

        Newlines in values become spaces: the protocol separates assignments with them.
        """
        if self._address is None:
            return
        message = "".join(f"{key}={str(value).replace(chr(10), ' ')}\n" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # A full receive queue must not stall the event loop; such a datagram is lost.
                self._socket.setblocking(False)
            target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
            self._socket.sendto(message.encode(), target)
        except OSError as exc:
            if not self._failure_logged:
                self._failure_logged = True
                self._log.warning(Event.SYSTEMD_NOTIFY_FAILED, address=self._address, reason=str(exc))

    def close(self) -> None:
        """Release the socket; a later notification opens it again. Idempotent."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class Watchdog:
    """Sends ``WATCHDOG=1`` every half interval while the daemon itself is healthy.

    Healthy means the daemon's own machinery works, never that ZooKeeper does: a restart cannot
    bring ZooKeeper back, and an outage longer than ``WatchdogSec`` would otherwise have
    systemd abort every daemon of the fleet at once. The ping comes from a coroutine on the
    daemon's event loop, so a blocked loop sends nothing and systemd aborts the daemon after
    ``WatchdogSec``: no separate check can be more direct. Each tick also measures how late the
    loop woke it (its lag): a tick late by more than a quarter of the interval is logged
    (``systemd_watchdog_late``), since one late by half would have been the last.

    :param unhealthy: called every tick; ``None`` when healthy, else why not (one line). While
        it says why, no ping is sent; ``systemd_watchdog_withheld`` is logged once per spell.
    :param clock: monotonic seconds (the loop's own clock need not be it).
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        *,
        interval_s: float,
        unhealthy: Callable[[], str | None],
        log: EventLog,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._interval_s = interval_s
        self._unhealthy = unhealthy
        self._log = log
        self._clock = clock

    @property
    def period_s(self) -> float:
        """Seconds between pings: half the interval, as sd_watchdog_enabled(3) advises."""
        return self._interval_s / 2

    async def run(self) -> None:
        """Ping until cancelled."""
        withheld_for: str | None = None
        while True:
            # From the tick's start: a loop blocked between the ping and the sleep counts too.
            ticked_at = self._clock()
            problem = self._unhealthy()
            if problem is None:
                self._notifier.watchdog()
            elif problem != withheld_for:
                self._log.error(
                    Event.SYSTEMD_WATCHDOG_WITHHELD,
                    reason=f"{problem}: no more WATCHDOG=1, systemd will abort and restart the daemon",
                )
            withheld_for = problem
            await asyncio.sleep(self.period_s)
            late_s = self._clock() - ticked_at - self.period_s
            if late_s > self._interval_s / 4:
                self._log.warning(
                    Event.SYSTEMD_WATCHDOG_LATE,
                    reason=f"the event loop was blocked: the watchdog woke {late_s:.1f} s late "
                    f"(WatchdogSec={self._interval_s:g} s)",
                    late_s=round(late_s, 3),
                    watchdog_interval_s=self._interval_s,
                )


def _watchdog_usec(env: MutableMapping[str, str], log: EventLog) -> int | None:
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process: the one that exec'd us, or our parent
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning(
            Event.SYSTEMD_WATCHDOG_INVALID, reason=f"WATCHDOG_USEC={usec!r} is not a positive integer"
        )
        return None
    return value
