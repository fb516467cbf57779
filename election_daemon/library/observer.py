"""Observing an election without joining it: who leads, the queue, and every change of leader.

An :class:`Observer` holds a ZooKeeper session of its own (or shares an application's client)
but creates no node, so it never affects the election. It keeps a children watch on the
election path and re-reads the queue each time the watch fires; when the path does not exist
it watches for its creation instead. Watches are re-armed and the queue re-read after every
edge of the session (connection loss, a ZooKeeper server going away, session expiry), so
nothing is polled and a change that happened while the observer was cut off is reported once
it is back, as one change from the last leader it saw to the one it finds.

The leader is the head of the queue with a recorded term, as
:func:`election_daemon.library.candidacy.read_queue` reads it (see :mod:`.terms`): a head that
has not taken over yet is shown as next, not as leader. The observer watches the queue and the
record. A change is reported only when the leader's node (its token) differs from the previous
one seen, so a fault that leaves every node in place is silent; its reason is the recorded
term's end when its leader said why (``resigned``, ``step_down``, ``priority_handover``,
``stopped``), ``node_deleted`` when its node went while its session lives on, and
``session_expired`` when its session went too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from election_daemon.errors import (
    ConnectionLossError,
    ConnectTimeoutError,
    ElectionError,
    NoAuthError,
    NoNodeError,
    SessionLostError,
    ZooKeeperError,
)
from election_daemon.library import terms
from election_daemon.library._options import connection_options
from election_daemon.library._zk import ZKClient, ZooKeeper
from election_daemon.library.acl import AclEntry
from election_daemon.library.broadcast import Broadcast
from election_daemon.library.candidacy import Participant, read_queue
from election_daemon.library.events import Reason
from election_daemon.library.limits import (
    CONNECT_TIMEOUT_RANGE_S,
    SESSION_TIMEOUT_RANGE_S,
    check_seconds,
    validate_election_path,
)
from election_daemon.library.security import DigestAuth, TLSConfig
from election_daemon.library.session import Session, SessionChange, SessionState

__all__ = ["LeaderChange", "Observer", "Snapshot"]

_log = logging.getLogger(__name__)


# Between failed reads while the session still looks healthy.
_RETRY_DELAY_S = 0.2


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The election as an observer sees it at ``taken_at``.

    ``leader_since`` is when the current leader started leading as far as the observer can
    tell. When the observer saw it take over (``takeover_seen``), that is the moment it did,
    exact within a watch's delay. Otherwise (the leader was there before the observer, or took
    over while the observer was cut off) ZooKeeper keeps no record of the moment, and it is
    the earliest possible one: the latest of its node's creation time on the ZooKeeper server
    and the last moment the observer saw the previous leader. ``leader_for_s`` is then an upper
    bound: a follower promoted long after joining is credited with its wait.
    """

    path: str
    leader: Participant | None
    participants: tuple[Participant, ...]
    """Every contender in queue order, the leader first."""
    leader_since: float | None
    """Unix time at which the leader started leading (see above), or None without a leader."""
    takeover_seen: bool
    """Whether the observer saw the leader take over, making ``leader_since`` exact."""
    taken_at: float
    """Unix time of the read this snapshot reports."""
    connected: bool
    """False when the observer's session is not connected: this is then the last view it had."""

    @property
    def leader_for_s(self) -> float | None:
        """How long the leader had led at ``taken_at`` (never negative, whatever the clocks)."""
        if self.leader_since is None:
            return None
        return max(0.0, self.taken_at - self.leader_since)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``path``, ``leader``, ``leader_for_s``, ``participants``."""
        leader_for_s = self.leader_for_s
        return {
            "path": self.path,
            "leader": self.leader.as_dict() if self.leader is not None else None,
            "leader_for_s": None if leader_for_s is None else round(leader_for_s, 3),
            "participants": [p.as_dict() for p in self.participants],
        }


@dataclass(frozen=True, slots=True)
class LeaderChange:
    """The leader changed: from ``previous`` to ``leader`` (either may be None: no leader).

    ``reason`` says why, as far as ZooKeeper tells: the previous term's recorded end
    (``resigned``, ``step_down``, ``priority_handover``, ``stopped``), ``node_deleted`` (its
    node went, its session lives on), ``session_expired`` (its session went too: a crash, a
    partition), ``leader_left`` (its node went, the cause unknown), ``first_contender`` (a
    leader for an election that had none), or ``queue_changed`` (anything else).
    """

    time: float
    """Unix time at which the observer saw the change."""
    previous: Participant | None
    leader: Participant | None
    token: int | None
    """The new leader's fencing token (its node's czxid), None without a leader."""
    reason: Reason
    leaderless_s: float | None
    """For a leader taking over an election that had none: how long the observer saw it
    leaderless (None if that began before the observer started). 0.0 for a direct handover;
    None when the election is left without a leader."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "previous": self.previous.as_dict() if self.previous is not None else None,
            "leader": self.leader.as_dict() if self.leader is not None else None,
            "token": self.token,
            "reason": self.reason,
            "leaderless_s": None if self.leaderless_s is None else round(self.leaderless_s, 3),
        }


def _token(participant: Participant | None) -> int | None:
    return participant.token if participant is not None else None


class Observer:
    """Watches the election under ``path`` without taking part in it.

    :param hosts: ZooKeeper connect string (``host:port,...[/chroot]``); may be None with ``client``.
    :param path: the election's znode path.
    :param session_timeout_s: the session timeout to request for the observer's own session.
    :param connect_timeout_s: how long :meth:`start` waits for ZooKeeper.
    :param client: an aiozk ``ZKClient`` to share with elections; it is not closed by us.
    :param tls: :param tls_ca: :param tls_cert: :param tls_key: :param tls_verify_hostname:
        :param auth: TLS and credentials, as for :class:`~election_daemon.library.election.Election`.
    """

    def __init__(
        self,
        hosts: str | None,
        path: str,
        *,
        session_timeout_s: float = 10.0,
        connect_timeout_s: float = 30.0,
        client: ZKClient | None = None,
        tls: ssl.SSLContext | TLSConfig | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_verify_hostname: bool = True,
        auth: DigestAuth | str | None = None,
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
        session_timeout_s = check_seconds("session_timeout_s", session_timeout_s, SESSION_TIMEOUT_RANGE_S)
        connect_timeout_s = check_seconds("connect_timeout_s", connect_timeout_s, CONNECT_TIMEOUT_RANGE_S)
        self.path = validate_election_path(path)
        self.session_timeout_s = session_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._view: Snapshot | None = None
        self._first_view = asyncio.Event()
        self._failure: Exception | None = None
        self._stopped = False
        # The last moment the current view was known to hold: when the observer last read
        # it, or saw a watch fire, or lost its connection.
        self._view_held_at: float | None = None
        # Whether the watch fired since the last read, the connection holding throughout.
        self._watch_fired = False
        self._leaderless_since: float | None = None
        self._changes: Broadcast[LeaderChange] = Broadcast()
        self._snapshots: Broadcast[Snapshot] = Broadcast()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and read the queue once; then follow it until :meth:`stop`.

        Raises :class:`ConnectTimeoutError` if no ZooKeeper server answers within the connect
        timeout, and :class:`NoAuthError` if ZooKeeper refuses to let us read the path.
        """
        if self._session is not None:
            raise ElectionError("the observer has already been started")
        session = self._connection.open_session(self.session_timeout_s)
        self._session = session
        session.acquire()
        session.add_listener(self._on_session_change)
        try:
            await session.start(connect_timeout_s=self.connect_timeout_s)
            self._task = asyncio.create_task(self._follow(session), name=f"observer {self.path}")
            first = asyncio.ensure_future(self._first_view.wait())
            try:
                await asyncio.wait(
                    [first, self._task], timeout=self.connect_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                first.cancel()
            if self._failure is not None:
                raise self._failure
            if self._view is None:
                raise ConnectTimeoutError(f"could not read {self.path} within {self.connect_timeout_s:g} s")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop following; end every :meth:`changes` and :meth:`snapshots` iteration."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        session = self._session
        if session is not None:
            session.remove_listener(self._on_session_change)
            await session.release()
        self._changes.close(self._failure)
        self._snapshots.close(self._failure)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- queries -----------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The observer's ZooKeeper session (its state, its id)."""
        if self._session is None:
            raise ElectionError("the observer has not been started")
        return self._session

    @property
    def connected(self) -> bool:
        """Whether the observer's session is connected (its view is current)."""
        return self._session is not None and self._session.state is SessionState.CONNECTED

    async def snapshot(self) -> Snapshot:
        """Read the queue now and return it with what the observer knows of the leader's term.

        Waits for the session to be connected (ZooKeeper requests wait for a connection anyway).
        """
        session = self._require_started()
        await session.wait_connected()
        participants = tuple(await read_queue(session.zk, self.path))
        # Only a head with a recorded term leads (see read_queue); one not yet taken over is next.
        leader = participants[0] if participants and participants[0].is_leader else None
        now = time.time()
        view = self._view
        if view is not None and leader is not None and _token(view.leader) == leader.token:
            return Snapshot(
                self.path, leader, participants, view.leader_since, view.takeover_seen, now, connected=True
            )
        since = None if leader is None else await self._created_at(session.zk, leader, now)
        return Snapshot(self.path, leader, participants, since, False, now, connected=True)

    async def acl(self) -> tuple[AclEntry, ...] | None:
        """The election path's ACL as ZooKeeper keeps it; None if the path does not exist.

        :func:`election_daemon.library.acl.open_rights` tells what it leaves to anyone.
        """
        session = self._require_started()
        await session.wait_connected()
        try:
            return await session.zk.get_acl(self.path)
        except NoNodeError:
            return None

    def latest(self) -> Snapshot | None:
        """The view as of the last change the observer saw, without asking ZooKeeper."""
        return self._view

    def changes(self) -> AsyncIterator[LeaderChange]:
        """Every leader change from the call on, in order, until the observer stops.

        The subscription starts at the call, not at the first iteration (as for
        :meth:`Election.changes`): take it before :meth:`start` to miss nothing after the
        first read (:meth:`latest` then gives the state the first change starts from). Once
        the observer has stopped, iteration ends; if it failed, it raises the failure. A
        subscriber more than 1000 items behind is cut off (see :mod:`.broadcast`).
        """
        return self._changes.subscribe()

    def snapshots(self) -> AsyncIterator[Snapshot]:
        """The current view (once there is one), then a new one each time the queue or the
        connection changes, until the observer stops. Subscribed at the call, like :meth:`changes`."""
        return self._snapshots.subscribe(first=self._view)

    def _require_started(self) -> Session:
        if self._failure is not None:
            raise self._failure
        if self._session is None or self._stopped:
            raise ElectionError("the observer is not running")
        return self._session

    # -- following ---------------------------------------------------------------------

    async def _follow(self, session: Session) -> None:
        try:
            await self._follow_queue(session)
        except Exception as e:
            # Refused (NoAuthError) or a bug: nothing more will be seen; tell every reader.
            if not isinstance(e, NoAuthError):
                _log.error("observer %s failed", self.path, exc_info=True)
            self._failure = e
            self._first_view.set()
            self._changes.close(e)
            self._snapshots.close(e)

    async def _follow_queue(self, session: Session) -> None:
        while True:
            await session.wait_connected()
            # One future per connected spell: the session keeps its waiters until its next edge.
            disconnected = session.not_connected()
            try:
                while not disconnected.done():
                    await self._follow_once(session.zk, disconnected)
            finally:
                disconnected.cancel()

    async def _follow_once(self, zk: ZooKeeper, disconnected: asyncio.Future[None]) -> None:
        """Arm the watch, read the queue, and wait for the watch or the end of the connection."""
        try:
            changed = await self._arm_watch(zk)
            try:
                await self._read(zk)
                await asyncio.wait([changed, disconnected], return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            if not changed.cancelled():
                # The watch fired: what the observer saw held until just now.
                self._view_held_at = time.time()
                self._watch_fired = True
        except NoAuthError:
            raise
        except (TimeoutError, ConnectionLossError, SessionLostError):
            # The session's own edge follows (or has come): wait for it rather than spin.
            await asyncio.wait([disconnected], timeout=_RETRY_DELAY_S)
        except ZooKeeperError:
            _log.warning("observer %s: ZooKeeper error; retrying", self.path, exc_info=True)
            await asyncio.wait([disconnected], timeout=_RETRY_DELAY_S)

    async def _arm_watch(self, zk: ZooKeeper) -> asyncio.Future[None]:
        """A future for the next change of the queue or the term record, or of the path's existence."""
        while True:
            try:
                _, children_changed = await zk.watched_children(self.path)
            except NoNodeError:
                pass
            else:
                try:
                    _, record_changed = await zk.watched_exists(terms.term_path(self.path))
                except BaseException:
                    children_changed.cancel()
                    raise
                return _either(children_changed, record_changed)
            # No election here yet: ZooKeeper sets an exists watch even on a missing node.
            stat, created = await zk.watched_exists(self.path)
            if stat is None:
                return created
            created.cancel()  # created meanwhile: watch its children after all

    async def _read(self, zk: ZooKeeper) -> None:
        participants = tuple(await read_queue(zk, self.path))
        leader = participants[0] if participants and participants[0].is_leader else None
        now = time.time()
        previous_view = self._view
        since: float | None = None
        seen = False
        if previous_view is not None and _token(previous_view.leader) == _token(leader):
            since, seen = previous_view.leader_since, previous_view.takeover_seen
        elif leader is not None:
            since = await self._created_at(zk, leader, now)
            if previous_view is not None and self._view_held_at is not None:
                # It cannot have taken over while the observer still saw the previous leader.
                since = max(since, self._view_held_at)
                seen = self._watch_fired
        if previous_view is None:
            self._leaderless_since = None
        elif _token(previous_view.leader) != _token(leader):
            record = await terms.read(zk, self.path) if previous_view.leader is not None else None
            self._publish_change(previous_view.leader, leader, participants, now, since, record=record)
        self._watch_fired = False
        self._view = Snapshot(self.path, leader, participants, since, seen, now, connected=True)
        self._view_held_at = now
        self._first_view.set()
        self._snapshots.publish(self._view)

    def _publish_change(
        self,
        previous: Participant | None,
        leader: Participant | None,
        participants: tuple[Participant, ...],
        now: float,
        since: float | None,
        *,
        record: terms.TermRecord | None,
    ) -> None:
        if previous is None:
            reason = Reason.FIRST_CONTENDER
        elif any(p.token == previous.token for p in participants):
            reason = Reason.QUEUE_CHANGED
        else:
            reason = _why_it_ended(previous, participants, record)
        leaderless_s: float | None = None
        if leader is not None and previous is not None:
            leaderless_s = 0.0
        elif leader is not None and self._leaderless_since is not None and since is not None:
            leaderless_s = max(0.0, since - self._leaderless_since)
        # It left no earlier than the observer last saw it.
        self._leaderless_since = (self._view_held_at or now) if leader is None else None
        change = LeaderChange(
            time=now,
            previous=previous,
            leader=leader,
            token=_token(leader),
            reason=reason,
            leaderless_s=leaderless_s,
        )
        self._changes.publish(change)

    async def _created_at(self, zk: ZooKeeper, leader: Participant, now: float) -> float:
        """The leader's node creation time (unix), or ``now`` if it is already gone."""
        try:
            _, stat = await zk.get(leader.node)
        except NoNodeError:
            return now  # it left meanwhile: the watch reports that next
        return stat.ctime_ms / 1000

    def _on_session_change(self, change: SessionChange) -> None:
        view = self._view
        if view is None or change.state is SessionState.CONNECTED:
            return
        self._watch_fired = False
        if view.connected:
            # A watch would have told of any change up to the last request ZooKeeper answered;
            # after that the observer knows nothing until it is back.
            answered = self.session.zk.last_answered_send
            if answered is not None:
                held_at = time.time() - (time.monotonic() - answered)
                self._view_held_at = max(self._view_held_at or held_at, held_at)
            self._view = dataclasses.replace(view, connected=False)
            self._snapshots.publish(self._view)


def _why_it_ended(
    previous: Participant, participants: tuple[Participant, ...], record: terms.TermRecord | None
) -> Reason:
    """Why ``previous``'s term ended, from the record (its own, or the next one's ``previous``)."""
    said: Reason | None = None
    known = False
    if record is not None and record.node == previous.node and record.token == previous.token:
        said, known = record.ended, True
    elif record is not None and record.previous is not None and record.previous.token == previous.token:
        said, known = record.previous.ended, True
    if said is not None:
        return said
    if any(p.session_id == previous.session_id for p in participants):
        return Reason.NODE_DELETED  # its session lives on and rejoined: someone deleted its node
    return Reason.SESSION_EXPIRED if known else Reason.LEADER_LEFT


def _either(a: asyncio.Future[None], b: asyncio.Future[None]) -> asyncio.Future[None]:
    """A future done when ``a`` or ``b`` is; cancelling it cancels both (their watches go).

    A plain future, not a task: cancel() must take effect at once, as _follow_once reads
    ``cancelled()`` right after it to tell a fired watch from a lost connection.
    """
    either: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _settle(f: asyncio.Future[None]) -> None:
        if either.done():
            return
        if f.cancelled():
            either.cancel()  # a watch given up (its request failed), as a single watch would be
        else:
            either.set_result(None)

    def _cancel_both(_f: asyncio.Future[None]) -> None:
        a.cancel()
        b.cancel()

    a.add_done_callback(_settle)
    b.add_done_callback(_settle)
    either.add_done_callback(_cancel_both)
    return either
