"""The election: a state machine over a session (liveness) and a candidacy (the recipe).

One private writer (:meth:`Election._set`) changes the state and fires events on edges
only. Leadership is declared only when our node is first in the queue, still exists, is
owned by the current session, and that session is CONNECTED with a valid lease. It is
revoked synchronously, on the session's edge, the moment the lease runs out or the
connection or session is lost, before any callback runs.

Callback contract (write it on the wall):

- ``on_elected(term)`` and ``on_revoked(reason)`` may be plain functions or coroutine
  functions. Coroutines run as tasks: a slow callback never delays revocation, and by the
  time ``on_elected`` runs, leadership may already be gone (``on_revoked`` follows).
- ``on_revoked`` runs exactly once for every ``on_elected``.
- An exception in a callback is logged and does not affect the election.
- A plain function callback runs on the event loop: keep it short.

Nothing here knows about processes or HTTP; the daemon consumes :meth:`Election.changes`
or :meth:`Election.add_listener`.

This module is the state machine and the loop that drives the recipe. The rest lives
apart: the recipe's node and queue (:mod:`.candidacy`), who should lead and when to hand
over (:mod:`.priority`, pure), the step-down and handover documents (:mod:`.protocol`),
the event streams (:mod:`.broadcast`), the callback contract (:mod:`._callbacks`), the
argument checks (:mod:`._options`) and the records it emits (:mod:`.transitions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from election_daemon.errors import (
    ConfigError,
    ConnectionLossError,
    ElectionError,
    InternalError,
    NoAuthError,
    NoNodeError,
    NotLeaderError,
    SessionLostError,
    SessionTimeoutError,
    ZooKeeperError,
)
from election_daemon.library import protocol, terms
from election_daemon.library._callbacks import Callbacks
from election_daemon.library._options import connection_options, election_options
from election_daemon.library._zk import GuardFailedError, ZKClient, ZooKeeper, first_of
from election_daemon.library.acl import ElectionACL, Identities, check_acl, path_acl
from election_daemon.library.broadcast import Broadcast
from election_daemon.library.candidacy import (
    Candidacy,
    OwnNode,
    Participant,
    Position,
    Waiting,
    decode_node_data,
    parse_contenders,
    read_queue,
)
from election_daemon.library.events import Event, Reason
from election_daemon.library.limits import validate_election_path
from election_daemon.library.priority import MAX_REMEMBERED, PriorityPolicy
from election_daemon.library.recipes import Recipe, parse_contender
from election_daemon.library.security import DigestAuth, TLSConfig
from election_daemon.library.session import Session, SessionChange, SessionState
from election_daemon.library.transitions import ElectionState, Term, Transition

__all__ = ["Election", "ElectionState", "Term", "Transition"]

_log = logging.getLogger(__name__)

# Between failed attempts to join while the session looks healthy (e.g. a NoAuth race).
_RETRY_DELAY_S = 0.2

# Fail-safe: after an unexpected exception the loop rejoins with a fresh node, backing off
# from _FAILURE_BACKOFF_S, doubling up to T; this many failures in a row stop the election.
_FAILURE_BACKOFF_S = 0.1
_MAX_FAILURES = 5
# Failures further apart than this many session timeouts are not "in a row".
_FAILURES_FORGOTTEN_T = 10


ElectedCallback = Callable[[Term], Awaitable[None] | None]
RevokedCallback = Callable[[str], Awaitable[None] | None]
Listener = Callable[[Transition], None]


class Election:
    """A participant in the leader election under ``path``.

    :param hosts: ZooKeeper connect string (``host:port,...[/chroot]``); may be None with ``client``.
    :param path: the election's znode path, e.g. ``/election/scheduler``.
    :param identity: this participant's name, published with its node (default ``host:pid``).
    :param data: published with the node for discovery: bytes or anything JSON can encode.
    :param session_timeout_s: requested ZooKeeper session timeout T; the server may clamp
        it, and every timer uses the negotiated value. ``session_timeout`` is accepted too.
    :param session_timeout_range_s: ``(shortest, longest)`` negotiated session timeouts to
        accept. The server clamps the requested one to 2 to 20 of its ticks; outside this range
        :meth:`start` raises :class:`~election_daemon.errors.SessionTimeoutError` before our node
        enters the queue. Default: exactly ``session_timeout_s`` with our own client, anything
        with a shared ``client`` (its owner chose it). The value in force is
        :attr:`negotiated_session_timeout_s`.
    :param client: an aiozk ``ZKClient`` to share between elections; it is not closed by us.
    :param connect_timeout_s: how long :meth:`start` waits for a session.
    :param priority: a participant with a higher priority is preferred as leader (default 0).
        When leadership changes, the highest-priority participant present takes over directly.
        A sitting leader hands over to a higher-priority participant only once that
        participant's node has been in the queue continuously for ``priority_stable_s``
        (default: twice the session timeout), so one that comes and goes causes no storm.
    :param recipe: how our node is named and filled: ``native`` (ours), or ``curator`` or
        ``kazoo`` to be seen as a participant by Curator's ``LeaderLatch`` or kazoo's
        ``Election`` on the same path. Whatever the recipe, we queue behind every live
        ephemeral contender of any recipe. Foreign recipes take no ``data`` or ``priority``.
    :param tls: connect over TLS with this :class:`ssl.SSLContext` (used as is; TLS 1.2 at
        least) or :class:`~election_daemon.library.security.TLSConfig`; or give the paths:
    :param tls_ca: PEM bundle of the CAs trusted to sign the servers' certificates.
    :param tls_cert: our client certificate (mutual TLS; its subject is our ``x509`` id).
    :param tls_key: its private key (unencrypted PEM), if not in ``tls_cert``'s file.
    :param tls_verify_hostname: check that each server's certificate names the host of the
        connect string (default); False accepts any host name, with a warning.
    :param auth: digest credentials, a :class:`~election_daemon.library.security.DigestAuth`
        or ``"user:password"``, sent as ``addauth`` after every (re)connection.
        :meth:`start` raises :class:`~election_daemon.errors.TLSError` or
        :class:`~election_daemon.errors.AuthFailedError` at once when these are refused.
    :param acl: who may join, ask for a step-down and read
        (:class:`~election_daemon.library.acl.ElectionACL`); the path and our node are created
        with these ACLs. None (default): created open, as ZooKeeper's ``world:anyone``. With
        ``acl`` or ``auth``, :meth:`start` raises :class:`NoAuthError` for a path whose ACL
        cannot let us delete our own node, before our node enters the queue.
    """

    def __init__(
        self,
        hosts: str | None,
        path: str,
        *,
        identity: str | None = None,
        data: Any = None,
        session_timeout_s: float | None = None,
        session_timeout: float | None = None,
        session_timeout_range_s: tuple[float, float] | None = None,
        client: ZKClient | None = None,
        connect_timeout_s: float = 30.0,
        priority: int = 0,
        priority_stable_s: float | None = None,
        recipe: Recipe | str = Recipe.NATIVE,
        tls: ssl.SSLContext | TLSConfig | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_verify_hostname: bool = True,
        auth: DigestAuth | str | None = None,
        acl: ElectionACL | None = None,
    ) -> None:
        self._connection = connection_options(
            hosts,
            client,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_verify_hostname=tls_verify_hostname,
            auth=auth,
        )
        options = election_options(
            path,
            identity=identity,
            data=data,
            session_timeout_s=session_timeout_s,
            session_timeout=session_timeout,
            session_timeout_range_s=session_timeout_range_s,
            connect_timeout_s=connect_timeout_s,
            priority=priority,
            priority_stable_s=priority_stable_s,
            recipe=recipe,
        )
        self.acl = check_acl(acl)
        # With authentication on, a path whose ACL forbids our delete is refused at join.
        self._identities = (
            Identities(
                ids=tuple(a.acl_id() for a in self._connection.auth),
                unknown_schemes=("ip", "sasl", "x509")
                if self._connection.tls is not None
                else ("ip", "sasl"),
            )
            if self._connection.auth or self.acl is not None
            else None
        )
        self.recipe = options.recipe
        self.path = options.path
        self.identity = options.identity
        self._payload = options.payload
        self.data = data
        self.requested_session_timeout_s = options.session_timeout_s
        self._accepted_timeout_s = options.session_timeout_range_s
        if self._accepted_timeout_s is None and client is None:
            self._accepted_timeout_s = (options.session_timeout_s, options.session_timeout_s)
        self.priority = priority
        # Who should lead, when to hand over, and the bound on moves (see .priority).
        self._policy = PriorityPolicy(
            self.path,
            priority,
            stable_s=options.priority_stable_s,
            session_timeout_s=self.requested_session_timeout_s,
        )
        self._ignored: set[str] = set()
        self._failures = 0
        self._last_failure_at = -math.inf
        self._connect_timeout_s = options.connect_timeout_s
        self._session: Session | None = None

        self._state = ElectionState.IDLE
        self._term: Term | None = None
        self._candidacy: Candidacy | None = None
        self._elected_callbacks: list[ElectedCallback] = []
        self._revoked_callbacks: list[RevokedCallback] = []
        self._listeners: list[Listener] = []
        self._callbacks = Callbacks(_log)
        self._transitions: Broadcast[Transition] = Broadcast()
        self._task: asyncio.Task[None] | None = None
        self._leading = asyncio.Event()
        self._joined: asyncio.Future[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._poked = False
        self._resign_requests: list[asyncio.Future[None]] = []
        self._failure: ElectionError | None = None
        self._session_released = False
        # The term we recorded in ZooKeeper (see .terms), and when our predecessor went.
        self._published: terms.TermRecord | None = None
        self._predecessor_gone_at: float | None = None
        # Whether priorities are in use: ours, a stability wait asked for, or a contender seen
        # with one. Only then does the leader watch the queue (see _hold_office). With ACLs,
        # other participants may not write the priority notice into our node: watch anyway.
        self._prioritized = priority != 0 or priority_stable_s is not None or acl is not None

    # -- registration ------------------------------------------------------------------

    def on_elected(self, callback: ElectedCallback) -> ElectedCallback:
        """Call ``callback(term)`` each time this participant becomes leader."""
        self._elected_callbacks.append(callback)
        return callback

    def on_revoked(self, callback: RevokedCallback) -> RevokedCallback:
        """Call ``callback(reason)`` each time leadership ends (once per ``on_elected``)."""
        self._revoked_callbacks.append(callback)
        return callback

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(transition)`` synchronously on every edge. It must not block."""
        self._listeners.append(listener)

    # -- queries -----------------------------------------------------------------------

    @property
    def state(self) -> ElectionState:
        return self._state

    @property
    def is_leader(self) -> bool:
        """True only while leading with an unexpired lease (checked now, not at the last edge)."""
        return (
            self._state is ElectionState.LEADING
            and self._session is not None
            and self._session.lease_remaining_s() > 0
        )

    @property
    def term(self) -> Term | None:
        """The current term while leading, else None."""
        return self._term if self._state is ElectionState.LEADING else None

    @property
    def node(self) -> str | None:
        return self._candidacy.node if self._candidacy is not None else None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise ElectionError("the election has not been started")
        return self._session

    @property
    def negotiated_session_timeout_s(self) -> float | None:
        return self._session.negotiated_timeout_s if self._session is not None else None

    async def leader(self) -> Participant | None:
        """The current leader: the head of the queue with a recorded term (see
        :class:`~.candidacy.Participant`); None if the head has not taken over."""
        queue = await self.participants()
        return queue[0] if queue and queue[0].is_leader else None

    async def participants(self) -> list[Participant]:
        """Every genuine live contender in queue order, the head first (of any recipe)."""
        if self._state is ElectionState.STOPPED:
            raise ElectionError("the election was stopped: its session is closed")
        queue = await read_queue(self.session.zk, self.path)
        term = self.term
        if queue and queue[0].is_next and term is not None and queue[0].node == term.node and self.is_leader:
            # Our own term, not recorded yet (the record follows the elected edge): we know.
            queue[0] = dataclasses.replace(queue[0], is_leader=True, is_next=False)
        return queue

    @property
    def failure(self) -> ElectionError | None:
        """Why the election stopped by itself (an :class:`InternalError`, a refusal), if it did."""
        return self._failure

    async def wait_for_leadership(self, timeout: float | None = None) -> Term:
        """Until this participant leads; returns the term. Raises TimeoutError on ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                if self._failure is not None:
                    raise self._failure
                if self._state is ElectionState.STOPPED:
                    raise ElectionError("the election was stopped")
                term = self.term
                if term is not None:
                    return term
                await self._leading.wait()
                # Leadership can come and go between the edge and this task's turn.
                if self._state is not ElectionState.LEADING:
                    self._leading.clear()

    def changes(self) -> AsyncIterator[Transition]:
        """Every transition from the call on, in order, until the election stops.

        The subscription starts at the call, not at the first iteration (as for the
        observer's streams): take it before :meth:`start` to see every transition. Once the
        election has stopped, iteration ends; if it stopped by itself, it raises
        :attr:`failure`. A subscriber that falls more than 1000 transitions behind is cut off
        with :class:`~election_daemon.library.broadcast.SubscriberOverflowError` after the
        ones it had (see :mod:`.broadcast`).
        """
        return self._transitions.subscribe()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Join the election; returns once our node is in the queue.

        Raises :class:`ConnectTimeoutError` if no ZooKeeper answers within the connect timeout,
        and :class:`NoAuthError` if ZooKeeper refuses our node.
        """
        if self._state is not ElectionState.IDLE:
            raise ElectionError(f"cannot start an election that is {self._state.value}")
        session = self._connection.open_session(self.requested_session_timeout_s)
        self._session = session
        session.acquire()
        session.add_listener(self._on_session_change)
        self._set(ElectionState.JOINING, Event.STARTING, None)
        try:
            await session.start(connect_timeout_s=self._connect_timeout_s)
            self._check_negotiated_timeout(session)
            if session.is_connected():
                self._emit_session_event(Event.CONNECTED, Reason.CONNECTED)
            # One future, resolved by the first FOLLOWING or LEADING edge or by the loop's end:
            # no task of its own, since thousands of elections may be starting at once.
            joined = self._joined = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(), name=f"election {self.path}")
            self._task.add_done_callback(self._loop_ended)
            self._task.add_done_callback(lambda _: _resolve(joined))
            await joined
            if self._failure is not None:
                raise self._failure
        except BaseException:
            await self._shutdown(Reason.START_FAILED)
            raise

    def _check_negotiated_timeout(self, session: Session) -> None:
        """Refuse, before our node exists, a session whose timeout nobody asked for."""
        accepted = self._accepted_timeout_s
        negotiated_s = session.negotiated_timeout_s
        # ZooKeeper counts in milliseconds: half of one is no difference.
        if accepted is None or accepted[0] - 5e-4 <= negotiated_s <= accepted[1] + 5e-4:
            return
        wanted = (
            f"{accepted[0]:g} s" if accepted[0] == accepted[1] else f"{accepted[0]:g} to {accepted[1]:g} s"
        )
        raise SessionTimeoutError(
            f"ZooKeeper negotiated a session timeout of {negotiated_s:g} s, not {wanted}: its "
            "tickTime allows 2 to 20 ticks (minSessionTimeout, maxSessionTimeout); ask for a "
            "timeout within them or accept a range"
        )

    async def resign(self) -> None:
        """Give up leadership now and rejoin at the back of the queue (no-op unless leading).

        Returns after ``on_revoked`` callbacks finished and our new node is in the queue.
        """
        if self._state is not ElectionState.LEADING:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._resign_requests.append(fut)
        self._poke()
        await fut

    async def stop(self) -> None:
        """Leave for good: revoke (callbacks first), delete our node, close an owned client.

        Raises the election's :attr:`failure` if it had stopped by itself (after cleaning up).
        """
        if self._state is ElectionState.IDLE:
            self._set(ElectionState.STOPPED, Event.STOPPED, Reason.STOPPED)
            self._transitions.close()
        elif self._state is not ElectionState.STOPPED or (
            self._session is not None and not self._session_released
        ):
            await self._shutdown(Reason.STOPPED)
        if self._failure is not None:
            raise self._failure

    async def __aenter__(self) -> Election:
        """``async with Election(...) as election:`` joins, as :meth:`start` does."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Leaves, as :meth:`stop` does, however the block ends (Ctrl-C and cancellation too)."""
        await self.stop()

    async def _shutdown(self, reason: Reason) -> None:
        if self._state is ElectionState.LEADING:
            self._revoke(reason, ElectionState.STOPPED)
        if self._task is not None:
            self._task.cancel()
            # wait(), not await: a loop that died has been dealt with by _loop_ended.
            await asyncio.wait([self._task])
            self._task = None
        await self._callbacks.revoked_done()
        session = self._session
        if session is not None and self._candidacy is not None and session.is_connected():
            with contextlib.suppress(ElectionError, TimeoutError):
                async with asyncio.timeout(session.negotiated_timeout_s / 3):
                    await self._leave(self._candidacy, reason)
        self._candidacy = None
        if self._failure is None:
            # Always the last event, also after a leader's "revoked" (which already says STOPPED).
            self._set(ElectionState.STOPPED, Event.STOPPED, reason, force=True)
        self._leading.set()  # wakes wait_for_leadership(), which then raises
        for fut in self._resign_requests:
            if not fut.done():
                fut.set_result(None)
        if session is not None:
            self._session_released = True
            session.remove_listener(self._on_session_change)
            await session.release()
        self._transitions.close(self._failure)

    # -- guarded writes ----------------------------------------------------------------

    async def guarded_set(self, path: str, value: bytes) -> None:
        """Write ``value`` to ``path`` only if this term's node still exists (one ZooKeeper multi).

        Raises :class:`NotLeaderError` if not leading or if the term ended before the commit,
        :class:`ConfigError` for a bad ``path`` or a ``value`` that is not bytes, and the
        :class:`ZooKeeperError` that ZooKeeper gave for the write itself (no such node, ...).
        """
        validate_election_path(path, "path")
        if not isinstance(value, bytes):
            raise ConfigError("value", f"must be bytes, not {type(value).__name__}")
        term = self.term
        if term is None or not self.is_leader:
            raise NotLeaderError(f"{self.identity} does not lead {self.path}")
        try:
            await self.session.zk.guarded_set(term.node, path, value)
        except GuardFailedError as e:
            raise NotLeaderError(f"term {term.token} of {self.path} has ended") from e

    # -- the one writer ----------------------------------------------------------------

    def _set(
        self,
        state: ElectionState,
        event: Event,
        reason: Reason | None,
        *,
        force: bool = False,
        error: BaseException | None = None,
        term: Term | None = None,
        detail: str | None = None,
        previous_id: str | None = None,
        previous_token: int | None = None,
        previous_alive_at: float | None = None,
        elected_at: float | None = None,
    ) -> None:
        previous_state = self._state
        if (state is previous_state or previous_state is ElectionState.STOPPED) and not force:
            return
        self._state = state
        if state is ElectionState.LEADING:
            self._leading.set()
        else:
            self._leading.clear()
        if state in (ElectionState.FOLLOWING, ElectionState.LEADING) and self._joined is not None:
            _resolve(self._joined)
        term = term or self._term
        session = self._session
        confirmed = session is not None and event in _CONFIRMED
        transition = Transition(
            event=event,
            state=state,
            previous_state=previous_state,
            reason=reason,
            path=self.path,
            id=self.identity,
            node=self.node,
            token=term.token if term is not None else None,
            session_id=session.session_id if session is not None else None,
            timestamp=time.time(),
            monotonic_s=time.monotonic(),
            error=error,
            detail=detail,
            term_s=time.monotonic() - term.started_monotonic if event is Event.REVOKED and term else None,
            server=session.zk.server if session is not None and confirmed else None,
            session_timeout_s=session.negotiated_timeout_s if session is not None and confirmed else None,
            previous_id=previous_id,
            previous_token=previous_token,
            previous_alive_at=previous_alive_at,
            elected_at=elected_at,
        )
        self._callbacks.notify(self._listeners, transition)
        self._transitions.publish(transition)

    def _alive_at(self, previous: terms.TermRecord) -> float | None:
        """The previous term's last proof of life that we can know (unix time).

        Ended on request: when its leader said so. Else its node went by a session expiry (or
        an operator's delete), which ZooKeeper carries out at least the session timeout after
        it last heard from that leader: failover then counts that wait too.
        """
        if previous.ended_at is not None:
            return previous.ended_at
        if self._predecessor_gone_at is not None:
            return self._predecessor_gone_at - previous.session_timeout_s
        return None

    def _emit_session_event(self, event: Event, reason: Reason) -> None:
        """Session edges that do not move the election (connected, reconnected) are events too."""
        self._set(self._state, event, reason, force=True)

    def _revoke(self, reason: Reason, to: ElectionState) -> None:
        if self._state is not ElectionState.LEADING:
            return
        self._set(to, Event.REVOKED, reason)
        self._term = None
        self._callbacks.run(self._revoked_callbacks, reason, revoking=True)
        if reason is not Reason.RESIGNED:
            # A resign() asked of this term is answered by its end, whatever ended it: it must
            # not carry over to resign the next term.
            requests, self._resign_requests = self._resign_requests, []
            for fut in requests:
                if not fut.done():
                    fut.set_result(None)

    # -- reacting to the session ------------------------------------------------------

    def _on_session_change(self, change: SessionChange) -> None:
        if self._state in (ElectionState.IDLE, ElectionState.STOPPED):
            return
        try:
            self._follow_session(change)
        except Exception as e:
            # Fail-safe: whatever went wrong, leadership does not survive it.
            self._internal_error(e)
            self._poke()

    def _follow_session(self, change: SessionChange) -> None:
        if change.state is SessionState.DISCONNECTED:
            if self._state is ElectionState.LEADING:
                # Riding through: the lease still bounds this term (see .session); its expiry
                # arrives here as SUSPENDED and revokes. The loop re-verifies our node once
                # the session is confirmed on another server.
                remaining_s = self.session.lease_remaining_s()
                self._set(
                    self._state,
                    Event.DISCONNECTED,
                    change.reason,
                    force=True,
                    detail=f"leading on a lease of {remaining_s:.3f} s",
                )
            else:
                self._set(ElectionState.SUSPENDED, Event.SUSPENDED, change.reason)
        elif change.state is SessionState.SUSPENDED:
            if self._state is ElectionState.LEADING:
                self._revoke(change.reason, ElectionState.SUSPENDED)
            else:
                self._set(ElectionState.SUSPENDED, Event.SUSPENDED, change.reason)
        elif change.state in (SessionState.LOST, SessionState.CLOSED):
            reason = Reason.SESSION_EXPIRED if change.state is SessionState.LOST else Reason.SESSION_CLOSED
            self._candidacy = None
            self._published = None
            if self._state is ElectionState.LEADING:
                self._revoke(reason, ElectionState.JOINING)
            else:
                self._set(ElectionState.JOINING, Event.SESSION_LOST, reason, force=True)
        elif change.state is SessionState.CONNECTED and change.reason is not Reason.CONNECTED:
            self._emit_session_event(Event.RECONNECTED, change.reason)
        elif change.state is SessionState.CONNECTED:
            return  # the first confirmation: every loop waits for it already, none needs a poke
        self._poke()

    def _poke(self) -> None:
        """Wake the loop's current or next wait (a resign request, a session edge)."""
        self._poked = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _wake_future(self) -> asyncio.Future[None]:
        # A bare future rather than Event.wait(): waiting must not cost a task per election.
        # Level-triggered: a poke that came while the loop was busy elsewhere is not lost.
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._poked:
            fut.set_result(None)
        self._poked = False
        self._wakeup = fut
        return fut

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        """Contend until stopped. Fail-safe: nothing unexpected leaves us LEADING.

        Expected trouble (connection loss, our node deleted) is retried as the recipe says.
        Any other exception is an internal error: leadership is revoked on the spot, the
        node is given up, and after a back-off we rejoin with a fresh one; after
        ``_MAX_FAILURES`` in a row the election stops with an :class:`InternalError`.
        """
        session = self.session
        while True:
            try:
                await self._contend_once(session)
            except asyncio.CancelledError:
                raise
            except NoAuthError as e:
                self._fail(e, Reason.NO_AUTH)
                return
            except Exception as e:
                self._internal_error(e)
                if self._failures >= _MAX_FAILURES:
                    self._fail(
                        InternalError(f"{self.path}: {self._failures} internal errors in a row, last {e!r}"),
                        Reason.INTERNAL_ERROR,
                        cause=e,
                    )
                    self._give_up_node()
                    return
                backoff_s = _FAILURE_BACKOFF_S * 2 ** (self._failures - 1)
                await asyncio.sleep(min(backoff_s, session.negotiated_timeout_s))

    async def _contend_once(self, session: Session) -> None:
        try:
            await session.wait_connected()
            session_id = session.session_id
            assert session_id is not None
            candidacy = self._candidacy
            if candidacy is None or candidacy.session_id != session_id:
                candidacy = self._candidacy = Candidacy(
                    session.zk,
                    self.path,
                    self._payload,
                    session_id=session_id,
                    priority=self.priority,
                    recipe=self.recipe,
                    acl=self.acl,
                    identities=self._identities,
                )
            await candidacy.join()
            await self._contend(candidacy)
        except NoNodeError:
            # Our node is gone (an operator, or the path was deleted): join again, anew, paced
            # so that deleting our node over and over cannot make us spin.
            self._revoke(Reason.NODE_DELETED, ElectionState.JOINING)
            if self._state is not ElectionState.JOINING:
                self._set(ElectionState.JOINING, Event.NODE_LOST, Reason.NODE_DELETED)
            self._give_up_node()  # an orphan of ours may remain: it must not block the queue
            await self._pace()
        except (TimeoutError, ConnectionLossError, SessionLostError):
            # The session listener has (or will have) taken leadership away; wait for it.
            await self._pause_if_connected()
        except NoAuthError:
            raise
        except ZooKeeperError:
            _log.warning("election %s: ZooKeeper error; retrying", self.path, exc_info=True)
            await self._pause_if_connected()

    async def _pace(self) -> None:
        """Wait, if need be, until another move is within the bound (see :mod:`._pacing`)."""
        delay_s = self._policy.pace_s()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    def _internal_error(self, error: BaseException) -> None:
        """Revoke at once, say so loudly, and give up our node: the next join starts afresh."""
        now = time.monotonic()
        if now - self._last_failure_at > _FAILURES_FORGOTTEN_T * self.requested_session_timeout_s:
            self._failures = 0
        self._failures += 1
        self._last_failure_at = now
        ended = self._term if self._state is ElectionState.LEADING else None
        self._revoke(Reason.INTERNAL_ERROR, ElectionState.JOINING)
        _log.error("election %s: internal error; leadership given up", self.path, exc_info=error)
        self._set(
            ElectionState.JOINING,
            Event.INTERNAL_ERROR,
            Reason.INTERNAL_ERROR,
            force=True,
            error=error,
            term=ended,
            detail=f"{type(error).__name__}: {error}"[:500],
        )
        self._give_up_node()

    def _give_up_node(self) -> None:
        """Delete our node in the background: a node nobody waits with must not block others."""
        candidacy, self._candidacy = self._candidacy, None
        self._published = None
        if candidacy is not None and candidacy.node is not None:
            self._callbacks.spawn(candidacy.leave())

    def _fail(self, error: ElectionError, reason: Reason, *, cause: BaseException | None = None) -> None:
        """Stop for good: revoke, the ``failed`` event, and every waiter told why."""
        if cause is not None:
            error.__cause__ = cause
        self._failure = error
        self._revoke(reason, ElectionState.STOPPED)
        self._set(ElectionState.STOPPED, Event.FAILED, reason, force=True, detail=str(error)[:500])
        self._leading.set()
        for fut in self._resign_requests:
            if not fut.done():
                fut.set_result(None)
        self._transitions.close(error)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """The last line of defence: a loop that dies (past ``except Exception``) stops us."""
        if task.cancelled() or task.exception() is None or self._state is ElectionState.STOPPED:
            return
        error = task.exception()
        _log.error("election %s: the election loop died", self.path, exc_info=error)
        self._fail(
            InternalError(f"{self.path}: the election loop died: {error!r}"),
            Reason.INTERNAL_ERROR,
            cause=error,
        )
        self._give_up_node()

    async def _pause_if_connected(self) -> None:
        if self.session.is_connected():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.session.not_connected(), _RETRY_DELAY_S)

    async def _contend(self, candidacy: Candidacy) -> None:
        """Follow, then lead, while the session stays connected; returns when it does not."""
        session = self.session
        own: OwnNode | None = None
        predecessor_went = False
        head_went: Waiting | None = None  # the head whose deletion we last saw, if it was one
        while session.is_connected():
            if predecessor_went:
                # Not promoted on the notification alone (see _promoted_by): read the queue and
                # our own node in one round trip.
                position, fresh = await asyncio.gather(candidacy.position(), candidacy.read_own())
                own = fresh
                if fresh.node != position.node:  # an orphan of ours was older: lead with that
                    fresh.cancel()
                    own = None
            else:
                position = await candidacy.position()
            self._prioritized = self._prioritized or position.prioritized
            try:
                await self._notify_a_lesser_head(candidacy, position)
                waiting = await candidacy.watch_predecessor(position.preceding, self._ignore)
            except BaseException:
                if own is not None:
                    own.cancel()
                raise
            if waiting is not None:
                head_went = None
                if own is not None:
                    own.cancel()
                    own = None
                if await self._follow(waiting):
                    self._predecessor_gone_at = time.time()
                    if waiting.node == position.preceding[0]:
                        head_went = waiting
                    if self._promoted_by(waiting, position):
                        self._set(self._state, Event.PREDECESSOR_GONE, None, force=True)
                        rest = position.without(waiting.node)
                        await self._lead(candidacy, rest, waiting.own, waiting, promoted=True)
                        return
                waiting.cancel()
                predecessor_went = True
                continue
            if self._state is ElectionState.FOLLOWING:
                # Not an edge: the moment a failover begins, as this participant sees it.
                self._set(self._state, Event.PREDECESSOR_GONE, None, force=True)
            await self._lead(candidacy, position, own, head_went)
            return

    async def _follow(self, waiting: Waiting) -> bool:
        """Follow until the contender we wait on goes (True), or something else happens."""
        try:
            if self._state is ElectionState.LEADING:
                # Re-verifying after a reconnection, our node is not first any more: only a
                # node of ours replaced since (ours was deleted) can explain it.
                self._revoke(Reason.NODE_DELETED, ElectionState.FOLLOWING)
            self._set_following()
            session = self.session
            await first_of(waiting.deleted, waiting.changed, session.not_connected(), self._wake_future())
        except BaseException:
            waiting.cancel()
            raise
        # first_of cancels what did not fire: a cancelled watch is no deletion.
        return _fired(waiting.deleted)

    async def _notify_a_lesser_head(self, candidacy: Candidacy, position: Position) -> None:
        """Joining with a priority above the head's: tell it, once per candidacy, so that it
        watches the queue and hands over once we have waited long enough (see .protocol)."""
        if self.priority <= 0 or candidacy.notified or not position.preceding:
            return
        head = position.contenders[0]
        if head.recipe is Recipe.NATIVE and head.priority < self.priority:
            candidacy.notified = True
            failed = await protocol.notify_priority(candidacy.zk, position.preceding[0])
            if failed is not None:
                _log.warning(
                    "election %s: could not tell the leader of our priority (%s): it takes over "
                    "at the next change of leadership instead",
                    self.path,
                    failed,
                )

    def _promoted_by(self, waiting: Waiting, position: Position) -> bool:
        """Whether the deletion of the head we waited on makes us leader with no request more.

        The argument is :class:`~.candidacy.Waiting`'s: the head went, we are next, our node is
        ours (no change of it was notified before the head's deletion) and the session holds
        its lease now. With priorities or a handover request in the queue, who leads depends on
        what changed since the listing: then the queue is read again.
        """
        own = waiting.own
        return (
            own is not None
            and not own.change.done()
            and self._state is ElectionState.FOLLOWING
            and self.session.is_connected()
            and not self._prioritized
            and not position.path_has_data
            # The head's data changed, or held a request already when we read it: a step-down
            # request follows the handover request it names (see .protocol), and a priority
            # notice means a preferred contender joined after our listing. Look again.
            and not _fired(waiting.changed)
            and not protocol.asks_the_leader(waiting.raw)
        )

    def _set_following(self) -> None:
        if self._state is ElectionState.SUSPENDED:
            self._set(ElectionState.FOLLOWING, Event.RESUMED, None)
        elif self._state is ElectionState.JOINING:
            self._set(ElectionState.FOLLOWING, Event.JOINED, None)

    def _ignore(self, node: str, why: str) -> None:
        """Log a node we do not obey, once per node (the set is pruned, never unbounded)."""
        if node in self._ignored:
            return
        if len(self._ignored) >= MAX_REMEMBERED:
            self._ignored.clear()
        self._ignored.add(node)
        _log.warning("election %s: ignoring %s in the queue: %s", self.path, node, why)

    async def _is_live_contender(self, zk: ZooKeeper, node: str) -> bool:
        """Whether ``node`` is there and ephemeral: a live session's candidacy, not a look-alike."""
        stat = await zk.exists(node)
        if stat is None or stat.ephemeral_owner == 0:
            self._ignore(node, "not a live ephemeral contender")
            return False
        return True

    async def _lead(
        self,
        candidacy: Candidacy,
        position: Position,
        own: OwnNode | None,
        head: Waiting | None,
        *,
        promoted: bool = False,
    ) -> None:
        """Lead while our node, its owner and the session hold; hand over or resign on request.

        ``head``: the head of the queue whose deletion we waited on, if it was one (it names the
        previous term at once); ``promoted``: its deletion alone made us leader (see
        :meth:`_promoted_by`), with our node already read and watched. Either way the record
        of the term we replace is read after the elected edge, off the failover's path.
        """
        session = self.session
        handover: protocol.Handover | None = None
        if not promoted:
            ready = await self._prepare_to_lead(candidacy, position, own)
            if ready is None:
                return
            own, handover = ready
        assert own is not None
        while True:
            # A preferred contender joined (see .protocol): from now on the queue matters.
            self._prioritized = self._prioritized or protocol.priority_notice(own.raw)
            if own.stat.ephemeral_owner != candidacy.session_id or session.session_id != candidacy.session_id:
                own.cancel()
                raise NoNodeError(f"{own.node} is not owned by our session")
            if not session.holds_lease() or (
                self._state is not ElectionState.LEADING and not session.is_connected()
            ):
                own.cancel()
                return
            if self._state is not ElectionState.LEADING:
                if candidacy is not self._candidacy:
                    # Given up meanwhile (an internal error in a session callback).
                    own.cancel()
                    raise NoNodeError(f"{own.node} was given up")
                self._take_office(candidacy, own, head)
                # Head, alone, in a listing without a record: nobody can have written one since
                # (with contenders before us, one may have led meanwhile and left).
                recorded = position.term_recorded or head is not None or bool(position.preceding)
                await self._publish(candidacy, own, read_first=recorded)
                if handover is not None:
                    # Ours, or its target is gone: the handover is done either way.
                    await protocol.clear_handover(candidacy.zk, self.path, handover)
                    handover = None
            elif self._published is None and self._term is not None and self._term.node == own.node:
                # A record that a lost connection kept from landing: write it now.
                await self._publish(candidacy, own, read_first=True)
            elif protocol.step_down_request(own.raw) is not None and self._policy.may_step_down():
                own.cancel()
                await self._resign(candidacy, Reason.STEP_DOWN)
                return
            if not await self._hold_office(candidacy, own):
                return
            # Our node changed or went, the queue changed, or the connection came back: read it
            # again (NoNodeError revokes). While disconnected, aiozk holds the read until the
            # session is confirmed on some server, and that answer re-verifies our node.
            own = await candidacy.read_own()

    async def _prepare_to_lead(
        self, candidacy: Candidacy, position: Position, own: OwnNode | None
    ) -> tuple[OwnNode, protocol.Handover | None] | None:
        """Our node (watched) and a pending handover; None if we stepped aside for another
        contender instead."""
        if own is None:
            own = await candidacy.read_own()
        try:
            handover = (
                await protocol.read_handover(candidacy.zk, self.path) if position.path_has_data else None
            )
            # A leader re-verifying after a reconnection does not defer: it steps aside only
            # through a resign (which revokes first).
            if self._state is not ElectionState.LEADING and await self._defer_to_another(
                candidacy, position, handover
            ):
                own.cancel()
                return None
        except BaseException:
            own.cancel()
            raise
        return own, handover

    def _take_office(self, candidacy: Candidacy, own: OwnNode, head: Waiting | None) -> None:
        """The elected edge. ``head``: the head whose deletion we waited on, read when we began
        to wait on it: its identity and czxid name the term we replace."""
        self._set_following()
        previous_id: str | None = None
        previous_token: int | None = None
        if head is not None:
            contender = parse_contender(head.node.rpartition("/")[2])
            recipe = contender.recipe if contender is not None else Recipe.NATIVE
            previous_id, previous_token = decode_node_data(head.raw, recipe)[0], head.stat.czxid
        self._term = Term(
            token=own.stat.czxid,
            node=own.node,
            path=self.path,
            identity=self.identity,
            session_id=candidacy.session_id,
            started_at=time.time(),
            started_monotonic=time.monotonic(),
        )
        self._set(
            ElectionState.LEADING,
            Event.ELECTED,
            None,
            previous_id=previous_id,
            previous_token=previous_token,
        )
        self._callbacks.run(self._elected_callbacks, self._term)

    async def _publish(self, candidacy: Candidacy, own: OwnNode, *, read_first: bool) -> None:
        """Record our term (see .terms): observers name only a recorded term's holder as leader.

        After the elected edge, off the failover's path: first the record we replace (how that
        term ended), then ours in its place; ``term_recorded`` names the one replaced and the
        failover's length. The read comes after the listing or notification that showed our
        predecessor gone, never beside it: a graceful leader's last write (its term marked ended,
        its node deleted) is then always seen. ``read_first`` False: the listing that made us
        head showed no record, and only a leader writes one, so there is none to read.
        """
        term = self._term
        if term is None:
            return
        previous: terms.TermRecord | None = None
        recorded = False
        if read_first:
            try:
                previous, recorded = await terms.read_slot(candidacy.zk, self.path)
            except BaseException:
                own.cancel()
                raise
        if previous is not None and previous.node == term.node:
            previous = None  # our own term, resumed on the same node: nobody led in between
        record = terms.TermRecord(
            token=term.token,
            id=self.identity,
            node=term.node,
            session_id=term.session_id,
            started_at=term.started_at,
            session_timeout_s=self.session.negotiated_timeout_s,
            previous=None
            if previous is None
            else terms.Previous(previous.token, previous.id, previous.ended),
        )
        ours = candidacy.identities.ids if candidacy.identities is not None else ()
        acl = None if self.acl is None else path_acl(self.acl, ours)
        # Known before the write is answered: a stop that cancels us mid-write still marks the
        # record ended, and ZooKeeper applies a session's requests in order, so that mark lands
        # after the record (or finds none and the node is deleted alone).
        self._published = record
        try:
            await terms.publish(candidacy.zk, self.path, record, acl, exists=recorded)
        except GuardFailedError as e:
            self._published = None
            own.cancel()
            raise NoNodeError(f"{term.node} is gone: the term is over") from e
        except (ConnectionLossError, SessionLostError, TimeoutError):
            raise
        except ZooKeeperError as e:
            # The term is as safe without its record; observers show us as "next" meanwhile.
            self._published = None
            _log.warning("election %s: could not record term %d: %s", self.path, term.token, e)
            return
        if self._state is ElectionState.LEADING and self._term is term:
            self._set(
                self._state,
                Event.TERM_RECORDED,
                None,
                force=True,
                previous_id=previous.id if previous is not None else None,
                previous_token=previous.token if previous is not None else None,
                previous_alive_at=self._alive_at(previous) if previous is not None else None,
                elected_at=term.started_at,
            )

    async def _leave(self, candidacy: Candidacy, reason: Reason) -> None:
        """Delete our node; a recorded term of it is marked ended by ``reason`` in the same multi."""
        record, self._published = self._published, None
        if record is not None and record.node == candidacy.node:
            try:
                await terms.end_and_leave(candidacy.zk, self.path, record, reason, time.time())
                candidacy.node = None
                return
            except ZooKeeperError:
                pass  # the record was replaced or refused: delete the node alone
        await candidacy.leave()

    async def _hold_office(self, candidacy: Candidacy, own: OwnNode) -> bool:
        """Wait, leading, for the next change of our node, the queue or the session.

        Hands over to a preferred contender once it has waited long enough. Returns whether
        to go on leading (False: we resigned, handed over, or lost the connection).
        """
        session = self.session
        queue_change: asyncio.Future[None] | None = None
        wait_s = None
        if self._prioritized:
            # Only priorities make the queue's changes matter to a leader: without them, our
            # own node's watch and the session are all it waits on (one watch, no listings).
            queue_change, wait_s = await self._consider_handover(candidacy, own)
            if queue_change is None:
                return False
        waits = [own.change, session.lease_lost(), self._wake_future()]
        if queue_change is not None:
            waits.append(queue_change)
        if wait_s is not None:
            waits.append(_timer(wait_s))
        if protocol.step_down_request(own.raw) is not None:
            # Honoured once the move budget allows (see _pacing): check again then.
            waits.append(_timer(self._policy.moves.refill_s))
        await first_of(*waits)
        if self._resign_requests:
            await self._resign(candidacy, Reason.RESIGNED)
            return False
        # Revoked meanwhile (the lease ran out while a read waited for the connection): elect
        # again only through the queue, read afresh.
        return self._state is ElectionState.LEADING and session.holds_lease()

    async def _consider_handover(
        self, candidacy: Candidacy, own: OwnNode
    ) -> tuple[asyncio.Future[None] | None, float | None]:
        """List the queue (watched) and hand over to a preferred contender that has waited long
        enough. Returns the queue's watch and when to look again; no watch if we handed over."""
        zk = candidacy.zk
        try:
            children, queue_change = await zk.watched_children(self.path)
        except BaseException:
            own.cancel()
            raise
        try:
            target, wait_s = self._policy.successor(
                parse_contenders(children),
                is_mine=candidacy.is_mine,
                session_timeout_s=self.session.negotiated_timeout_s,
            )
            if target is not None:
                if await self._is_live_contender(zk, target) and self._policy.may_step_aside_for(target):
                    own.cancel()
                    queue_change.cancel()
                    await protocol.write_handover(zk, self.path, target)
                    await self._resign(candidacy, Reason.PRIORITY_HANDOVER)
                    return None, None
                self._policy.decline(target)
        except BaseException:
            own.cancel()
            queue_change.cancel()
            raise
        return queue_change, wait_s

    async def _defer_to_another(
        self, candidacy: Candidacy, position: Position, handover: protocol.Handover | None
    ) -> bool:
        """Before leading: step aside for a pending handover target or a higher priority.

        Only for a live ephemeral contender of this election, at most once per target and
        within the move budget (:mod:`.priority`): a target that never takes over cannot
        stall the election.
        """
        zk = candidacy.zk
        deferral = self._policy.deferral(
            position.node, position.mine, position.contenders, handover.to if handover is not None else None
        )
        if deferral is None:
            return False
        target = deferral.target
        if not (await self._is_live_contender(zk, target) and self._policy.may_step_aside_for(target)):
            return False
        if deferral.write_handover:
            await protocol.write_handover(zk, self.path, target)
        why = Reason.PRIORITY if deferral.write_handover else Reason.HANDOVER
        self._set(self._state, Event.DEFERRED, why, force=True, detail=target)
        await candidacy.leave()
        self._candidacy = None
        return True

    async def _resign(self, candidacy: Candidacy, reason: Reason) -> None:
        self._revoke(reason, ElectionState.JOINING)
        await self._callbacks.revoked_done()
        await self._leave(candidacy, reason)
        self._candidacy = None
        self._policy.left_the_lead()
        requests, self._resign_requests = self._resign_requests, []
        new = self._candidacy = Candidacy(
            candidacy.zk,
            self.path,
            self._payload,
            session_id=candidacy.session_id,
            priority=self.priority,
            recipe=self.recipe,
            acl=self.acl,
            identities=self._identities,
        )
        try:
            await new.join()
            self._set(ElectionState.FOLLOWING, Event.JOINED, reason)
        finally:
            for fut in requests:
                if not fut.done():
                    fut.set_result(None)


# The session edges whose transitions name the server and the negotiated timeout.
_CONFIRMED = frozenset({Event.CONNECTED, Event.RECONNECTED})


def _fired(fut: asyncio.Future[None]) -> bool:
    """Whether a watch future fired (a cancelled one is done but saw nothing)."""
    return fut.done() and not fut.cancelled()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _timer(delay_s: float) -> asyncio.Future[None]:
    """A future that resolves after ``delay_s`` (a timer handle, not a task)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    handle = loop.call_later(delay_s, _resolve, fut)
    fut.add_done_callback(lambda _f: handle.cancel())
    return fut
