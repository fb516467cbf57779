"""Liveness of one ZooKeeper session: its state, its lease, and the probes that renew it.

Like etcd's ``concurrency.Session``: the session decides whether anything may lead on this
connection; elections (many may share one session) decide who leads. The session is
CONNECTED only while aiozk reports a connected, read-write session *and* our own lease (see
:mod:`election_daemon.lease`) is valid. It leaves CONNECTED the moment either fails, and
listeners hear about it synchronously, on the edge, so that leadership is revoked with no
task switch in between.

A lost connection is not a lost session. While the lease runs, the session is DISCONNECTED:
a leader may go on leading, nobody may become one, and aiozk reconnects to another server
with the same session. Riding through a ZooKeeper restart this way is as safe as leading
while connected: the lease ends at least T/3 before the server may expire the session,
whatever happens to the connection, and the lease timer moves us to SUSPENDED the moment
it runs out. Only a read-only server (cut off from the quorum) suspends at once.

aiozk pings only every T/3 and waits 2T/3 for the answer, which may notice a dead connection
only after the server has already expired the session. So the session sends its own probe
(a ``sync``, a round trip through the ZooKeeper leader) every ``probe_interval_s`` and
renews the lease from the send time of the latest answered request, whoever sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from weakref import WeakKeyDictionary

from election_daemon.errors import (
    ConfigError,
    ConnectTimeoutError,
    ElectionError,
    NoAuthError,
    SessionLostError,
    ZooKeeperError,
)
from election_daemon.library._zk import ZKClient, ZkState, ZooKeeper
from election_daemon.library.events import Reason
from election_daemon.library.lease import Lease
from election_daemon.library.limits import format_servers
from election_daemon.library.security import DigestAuth

__all__ = ["Session", "SessionChange", "SessionState"]

_log = logging.getLogger(__name__)


class SessionState(enum.Enum):
    """Where the session stands. Only CONNECTED allows leading."""

    CONNECTING = "connecting"
    """No session confirmed yet: wait."""
    CONNECTED = "connected"
    """Session alive and lease valid: elections on it may lead."""
    DISCONNECTED = "disconnected"
    """Connection lost, lease still valid: a leader holds on until the lease runs out or the
    session is confirmed again on another server; nobody may become leader."""
    SUSPENDED = "suspended"
    """Connection or lease in doubt: nobody may lead on this session until it is confirmed again."""
    LOST = "lost"
    """The session expired: its ephemeral nodes are gone; a new session is being opened."""
    CLOSED = "closed"
    """Closed for good."""


@dataclass(frozen=True, slots=True)
class SessionChange:
    """One edge of the session's state machine."""

    state: SessionState
    previous: SessionState
    reason: Reason
    session_id: int | None


Listener = Callable[[SessionChange], None]

# The states in which the lease may still be valid, and a leader may go on leading.
_LEASED = frozenset({SessionState.CONNECTED, SessionState.DISCONNECTED})


class Session:
    """Liveness of one ZooKeeper client's session, shared by every election on that client."""

    _shared: ClassVar[WeakKeyDictionary[ZKClient, Session]] = WeakKeyDictionary()

    def __init__(
        self,
        zk: ZooKeeper,
        *,
        probe_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if probe_interval_s is not None and probe_interval_s <= 0:
            raise ConfigError("probe_interval_s", f"must be positive, not {probe_interval_s!r}")
        self.zk = zk
        self._clock = clock
        self._probe_interval_s = probe_interval_s
        self._lease = Lease(zk.negotiated_timeout_s)
        self._state = SessionState.CONNECTING
        self._session_id: int | None = None
        # Dicts (ordered, O(1) removal), not lists: ten thousand elections may share a session,
        # and each one's waits come and go at every wake-up.
        self._listeners: dict[Listener, None] = {}
        self._state_waiters: dict[asyncio.Future[None], Callable[[SessionState], bool]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lease_timer: asyncio.TimerHandle | None = None
        self._probe_now = asyncio.Event()
        self._refs = 0
        self._started = False
        self._refused: asyncio.Future[ZooKeeperError] | None = None
        self.last_change_monotonic = clock()

    # -- sharing ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        servers: tuple[tuple[str, int], ...],
        chroot: str | None,
        session_timeout_s: float,
        client: ZKClient | None,
        tls: ssl.SSLContext | None = None,
        auth: tuple[DigestAuth, ...] = (),
    ) -> Session:
        """The session to use: the shared one of ``client``, else a new hardened one of our own
        (over TLS with ``tls``; ``auth`` sent after every connection)."""
        if client is not None:
            return cls.for_client(client)
        zk = ZooKeeper.create(
            format_servers(servers), chroot=chroot, session_timeout_s=session_timeout_s, tls=tls, auth=auth
        )
        return cls(zk)

    @classmethod
    def for_client(cls, client: ZKClient) -> Session:
        """The one Session for an application's aiozk client (created on first use)."""
        session = cls._shared.get(client)
        if session is None or session.state is SessionState.CLOSED:
            session = cls(ZooKeeper.wrap(client))
            cls._shared[client] = session
        return session

    def acquire(self) -> None:
        self._refs += 1

    async def release(self) -> None:
        """Drop one user; the last one stops the session (closing the client if we own it)."""
        self._refs -= 1
        if self._refs <= 0:
            await self.close()

    # -- public view -----------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def session_id(self) -> int | None:
        """The id of the session the current state refers to."""
        return self._session_id

    @property
    def negotiated_timeout_s(self) -> float:
        return self.zk.negotiated_timeout_s

    @property
    def probe_interval_s(self) -> float:
        # Six probes a timeout keep at least T/2 of lease in hand between answers.
        return self._probe_interval_s or self.negotiated_timeout_s / 6

    def lease_remaining_s(self) -> float:
        self._absorb_answers()
        return self._lease.remaining_s(self._clock())

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` synchronously on every state edge. It must not block."""
        self._listeners[listener] = None

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.pop(listener, None)

    async def wait_connected(self) -> None:
        """Until the session is CONNECTED; raises SessionLostError once CLOSED."""
        await self._wait(lambda s: s in (SessionState.CONNECTED, SessionState.CLOSED))
        if self._state is SessionState.CLOSED:
            raise SessionLostError("the session is closed")

    def not_connected(self) -> asyncio.Future[None]:
        """A future that resolves as soon as the session leaves CONNECTED."""
        return self._future(lambda s: s is not SessionState.CONNECTED)

    def holds_lease(self) -> bool:
        """CONNECTED or DISCONNECTED with a lease valid *now*: whether a leader may go on leading."""
        if self._state in _LEASED and not self._lease.valid(self._clock()):
            self._lease_check()
        return self._state in _LEASED

    def lease_lost(self) -> asyncio.Future[None]:
        """A future that resolves as soon as the session holds no lease (neither CONNECTED nor
        DISCONNECTED)."""
        return self._future(lambda s: s not in _LEASED)

    def is_connected(self) -> bool:
        """CONNECTED with a lease valid *now*: a process resumed from a pause may not have run
        its lease timer yet, so the clock is read here rather than trusted from the last edge."""
        if self._state is SessionState.CONNECTED and not self._lease.valid(self._clock()):
            self._lease_check()
        return self._state is SessionState.CONNECTED

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, *, connect_timeout_s: float) -> None:
        """Connect if needed and wait until CONNECTED (lease renewed)."""
        if self._started:
            if not self.is_connected():  # (a shared session: usually confirmed long ago)
                await asyncio.wait_for(self.wait_connected(), connect_timeout_s)
            return
        self._started = True
        if not self.zk.started:
            await self.zk.start(connect_timeout_s=connect_timeout_s)
        self._lease.set_session_timeout(self.zk.negotiated_timeout_s)
        self._tasks = [
            asyncio.create_task(self._follow_client_state(), name="election-session-state"),
            asyncio.create_task(self._probe_loop(), name="election-session-probe"),
        ]
        refused = self._refused = asyncio.get_running_loop().create_future()
        connected = asyncio.ensure_future(self.wait_connected())
        try:
            waited: list[asyncio.Future[Any]] = [connected, refused]
            done, _ = await asyncio.wait(
                waited, timeout=connect_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            connected.cancel()
            self._refused = None
        if refused in done:
            await self.close()
            raise refused.result()
        refused.cancel()
        if connected not in done:
            await self.close()
            raise ConnectTimeoutError(
                f"ZooKeeper did not answer a probe within {connect_timeout_s:g} s"
            ) from None
        connected.result()

    async def close(self) -> None:
        """Stop probing; close the client if this session owns it (its nodes go at once)."""
        if self._state is SessionState.CLOSED:
            return
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        self._lease.invalidate()
        self._set(SessionState.CLOSED, Reason.SESSION_CLOSED)
        if self.zk.owns_client:
            await self.zk.close()

    # -- the one writer of state -----------------------------------------------------

    def _set(self, state: SessionState, reason: Reason) -> None:
        previous = self._state
        if state is previous or previous is SessionState.CLOSED:
            return
        self._state = state
        self.last_change_monotonic = self._clock()
        if state not in _LEASED and self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None
        change = SessionChange(state, previous, reason, self._session_id)
        _log.debug("session %s -> %s (%s)", previous.value, state.value, reason)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                _log.exception("session listener failed")
        for fut, predicate in list(self._state_waiters.items()):
            if fut.done():
                self._state_waiters.pop(fut, None)
            elif predicate(state):
                # Its done callback forgets it.
                fut.set_result(None)

    def _future(self, predicate: Callable[[SessionState], bool]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if predicate(self._state):
            fut.set_result(None)
        else:
            self._state_waiters[fut] = predicate
            # Waits abandoned between edges (every wake-up of an election makes one) go now.
            fut.add_done_callback(self._forget_waiter)
        return fut

    def _forget_waiter(self, fut: asyncio.Future[None]) -> None:
        self._state_waiters.pop(fut, None)

    async def _wait(self, predicate: Callable[[SessionState], bool]) -> None:
        fut = self._future(predicate)
        try:
            await fut
        finally:
            fut.cancel()

    # -- following aiozk ---------------------------------------------------------------

    async def _follow_client_state(self) -> None:
        while True:
            change = self.zk.state_change()
            zk_state = self.zk.state
            if zk_state == ZkState.CONNECTED:
                self._observe_session_id(self.zk.session_id)
                self._probe_now.set()
            elif zk_state == ZkState.SUSPENDED:
                self._connection_lost()
            elif zk_state == ZkState.READ_ONLY:
                # A read-only server is cut off from the quorum: it proves nothing, and a
                # session it serves may be expired by the quorum meanwhile.
                self._set_suspended(Reason.READ_ONLY)
            elif zk_state == ZkState.LOST and self._session_id is not None:
                self._lease.invalidate()
                self._set(SessionState.LOST, Reason.SESSION_EXPIRED)
            await change

    def _observe_session_id(self, session_id: int | None) -> None:
        if session_id is None or session_id == self._session_id:
            return
        if self._session_id is not None:
            # aiozk opened a new session quietly: the old one, and its nodes, are gone.
            self._lease.invalidate()
            self._set(SessionState.LOST, Reason.SESSION_EXPIRED)
        self._session_id = session_id
        self._lease.set_session_timeout(self.zk.negotiated_timeout_s)

    def _connection_lost(self) -> None:
        # The lease, not the connection, bounds leadership: hold on while it runs.
        if self._state is SessionState.CONNECTED and self._lease.valid(self._clock()):
            self._set(SessionState.DISCONNECTED, Reason.CONNECTION_LOST)
        else:
            self._set_suspended(Reason.CONNECTION_LOST)

    def _set_suspended(self, reason: Reason) -> None:
        if self._state in (SessionState.CONNECTED, SessionState.DISCONNECTED, SessionState.CONNECTING):
            self._set(SessionState.SUSPENDED, reason)

    # -- the lease -------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while True:
            self._probe_now.clear()
            if self.zk.state == ZkState.CONNECTED:
                await self._probe()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._probe_now.wait(), self.probe_interval_s)

    async def _probe(self) -> None:
        session_id = self.zk.session_id
        try:
            # No longer than a lease: a probe stuck on a dead connection renews nothing.
            await asyncio.wait_for(self.zk.sync("/"), self._lease.length_s)
        except NoAuthError as e:
            # The server closes unauthenticated sessions when it enforces authentication:
            # before the first connection that is a refusal to report, not a fault to wait out.
            if self._refused is not None and not self._refused.done():
                self._refused.set_result(e)
            return
        except (TimeoutError, ZooKeeperError):
            return
        except ElectionError:
            _log.exception("probe failed")
            return
        if session_id is None or session_id != self.zk.session_id:
            return
        self._observe_session_id(session_id)
        self._absorb_answers()
        if self._lease.valid(self._clock()) and self._state is not SessionState.CONNECTED:
            reason = {
                SessionState.CONNECTING: Reason.CONNECTED,
                SessionState.SUSPENDED: Reason.RECONNECTED,
                SessionState.DISCONNECTED: Reason.RECONNECTED,
                SessionState.LOST: Reason.NEW_SESSION,
            }.get(self._state, Reason.CONNECTED)
            self._set(SessionState.CONNECTED, reason)
        self._arm_lease_timer()

    def _absorb_answers(self) -> None:
        if self._session_id is None:
            return
        sent = self.zk.answered_since(self._session_id)
        if sent is not None:
            self._lease.renew(sent)

    def _arm_lease_timer(self) -> None:
        if self._state not in _LEASED:
            return
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        delay = self._lease.remaining_s(self._clock())
        self._lease_timer = asyncio.get_running_loop().call_later(delay, self._lease_check)

    def _lease_check(self) -> None:
        self._lease_timer = None
        self._absorb_answers()
        if self._lease.valid(self._clock()):
            self._arm_lease_timer()
        elif self._state in _LEASED:
            self._set(SessionState.SUSPENDED, Reason.LEASE_EXPIRED)
