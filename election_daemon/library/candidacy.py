"""The ZooKeeper recipe: one candidacy's node in the queue, ordering, and reading the queue.

Each candidacy creates an ephemeral sequential node named by its :class:`~.recipes.Recipe`
(natively ``<path>/_c_<guid>[_p<priority>]-<sequence>``; the priority is in the name so that
one listing shows every contender's priority). The guid is new for every candidacy, so a
create retried after a connection loss finds its own node instead of leaving a second one
that would block the queue (ZooKeeper's recipes, "Recoverable Errors and the GUID";
Curator's protected mode). Nodes are ordered by sequence number; the node with the lowest
sequence leads, and each contender waits only on the nearest genuine node before its own.

Every child whose name ends in a sequence number is a contender, whatever recipe made it
(:mod:`.recipes`), but a name is only a claim. A contender counts only if it is ephemeral
(a persistent look-alike belongs to no session and would stall the queue forever) and if
its czxid agrees with its place: sequence numbers and czxids both grow with every create
under one parent, so a node that sorts before another by name but was created after it
(higher czxid) was named by hand to jump the queue, and is skipped.

This module knows nothing of sessions' liveness or of leadership: :mod:`election` decides.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from election_daemon.errors import NoAuthError, NoNodeError, SessionLostError, ZooKeeperError
from election_daemon.library import payload, terms
from election_daemon.library._zk import Stat, ZooKeeper
from election_daemon.library.acl import (
    ElectionACL,
    Identities,
    can_delete_children,
    describe,
    node_acl,
    path_acl,
)
from election_daemon.library.limits import MAX_IDENTITY_BYTES
from election_daemon.library.protocol import with_step_down_request
from election_daemon.library.recipes import Contender, Recipe, new_guid, node_prefix, parse_contenders

__all__ = [
    "Candidacy",
    "Contender",
    "OwnNode",
    "Participant",
    "Position",
    "Waiting",
    "decode_node_data",
    "encode_node_data",
    "genuine",
    "parse_contenders",
    "read_queue",
    "with_step_down_request",  # the protocol's home is .protocol; kept here for older callers
]


def encode_node_data(identity: str, data: Any, recipe: Recipe = Recipe.NATIVE) -> bytes:
    """The payload published with a node: identity plus user data (bytes or JSON).

    Curator and kazoo keep the bare participant id in the node; so do we under their names.
    Raises ConfigError when ``data`` is not strict, bounded JSON (see :mod:`.payload`).
    """
    if recipe is not Recipe.NATIVE:
        return identity.encode("utf-8")
    doc: dict[str, Any] = {"id": identity}
    if isinstance(data, bytes | bytearray):
        doc["data_b64"] = base64.b64encode(bytes(data)).decode("ascii")
    elif data is not None:
        doc["data"] = data
    return payload.check_data(doc, "data")


def decode_node_data(raw: bytes, recipe: Recipe = Recipe.NATIVE) -> tuple[str | None, Any]:
    """(identity, data) from a node's payload; foreign payloads give (None, raw bytes).

    Never raises: the bytes come from anyone who can write to the election path.
    """
    try:
        doc = payload.loads(raw)
    except payload.PayloadError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("id"), str):
        if "data_b64" in doc:
            try:
                return doc["id"], base64.b64decode(doc["data_b64"], validate=True)
            except (ValueError, TypeError):
                return doc["id"], None
        return doc["id"], doc.get("data")
    if recipe is not Recipe.NATIVE and 0 < len(raw) <= MAX_IDENTITY_BYTES:
        # Curator's and kazoo's participant id: the node's data as text.
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, raw
        if text.isprintable():
            return text, None
    return None, raw


def genuine(found: Sequence[tuple[Contender, Stat]]) -> list[tuple[Contender, Stat]]:
    """The live contenders among ``found`` (in queue order) whose names tell the truth.

    Persistent nodes are nobody's candidacy. Genuine sequential nodes agree: the later the
    sequence, the higher the czxid. A node named by hand to jump the queue (or to pose
    behind it) breaks that order, so the queue is the longest run of live nodes whose names
    and czxids agree (on a tie, the one ending with the oldest node), and the rest is skipped.
    """
    live = [(c, s) for c, s in found if s.ephemeral_owner != 0]
    ends: list[int] = []  # per chain length, the index of the chain end with the lowest czxid
    end_czxids: list[int] = []
    before: list[int | None] = []
    for i, (_, stat) in enumerate(live):
        k = bisect.bisect_left(end_czxids, stat.czxid)
        before.append(ends[k - 1] if k else None)
        if k == len(ends):
            ends.append(i)
            end_czxids.append(stat.czxid)
        else:
            ends[k] = i
            end_czxids[k] = stat.czxid
    chain: list[tuple[Contender, Stat]] = []
    at = ends[-1] if ends else None
    while at is not None:
        chain.append(live[at])
        at = before[at]
    chain.reverse()
    return chain


@dataclass(frozen=True, slots=True)
class Participant:
    """A contender as others see it: who, where in the queue, and whether it leads.

    The leader is the head of the queue *with a recorded term* (:mod:`.terms`): a head that
    has not taken over yet (deferring, suspended, just promoted) is ``is_next``. A head of a
    foreign recipe (Curator, kazoo), which records no term of ours, leads by its place.
    """

    id: str | None
    node: str
    token: int
    """Its node's czxid: the fencing token of its term if it leads, the one it would get if not."""
    session_id: int
    data: Any
    is_leader: bool
    priority: int = 0
    recipe: Recipe = Recipe.NATIVE
    """Which recipe named the node: foreign contenders queue like ours but hold no term of ours."""
    is_next: bool = False
    """First in the queue, but no term recorded yet: it leads once it has taken over."""
    term_started_at: float | None = None
    """Unix time its recorded term began (the leader's clock), if it leads with one."""

    def as_dict(self) -> dict[str, Any]:
        data = self.data
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode("ascii")
        return {
            "id": self.id,
            "node": self.node,
            # Only a leader holds a token; the others' czxid is the token they would get.
            "token": self.token if self.is_leader else None,
            "czxid": self.token,
            "session_id": f"0x{self.session_id:x}",
            "data": data,
            "is_leader": self.is_leader,
            "is_next": self.is_next,
            "priority": self.priority,
            "recipe": self.recipe.value,
            "term_started_at": self.term_started_at,
        }


async def read_queue(zk: ZooKeeper, path: str) -> list[Participant]:
    """Every genuine live contender under ``path`` in queue order, the head first.

    Persistent look-alikes, nodes whose names lie about their place (:func:`genuine`) and
    nodes that vanish while being read are left out. Never raises on what the nodes hold.
    The head leads only with a recorded term (see :class:`Participant`).
    """
    listing, record = await asyncio.gather(zk.children(path), terms.read(zk, path), return_exceptions=True)
    if isinstance(listing, NoNodeError):
        return []
    if isinstance(listing, BaseException):
        raise listing
    if isinstance(record, BaseException):
        raise record
    children = listing

    async def _read(c: Contender) -> tuple[Contender, bytes, Stat] | None:
        try:
            raw, stat = await zk.get(f"{path}/{c.name}")
        except NoNodeError:
            return None
        return c, raw, stat

    found = [r for r in await asyncio.gather(*map(_read, parse_contenders(children))) if r is not None]
    raw_of = {c.name: raw for c, raw, _ in found}
    participants: list[Participant] = []
    for c, stat in genuine([(c, stat) for c, _, stat in found]):
        identity, data = decode_node_data(raw_of[c.name], c.recipe)
        node = f"{path}/{c.name}"
        head = not participants
        recorded = record is not None and record.names(node, stat.czxid, stat.ephemeral_owner)
        foreign_head = head and c.recipe is not Recipe.NATIVE and (record is None or record.node != node)
        leads = head and (recorded or foreign_head)
        participants.append(
            Participant(
                id=identity,
                node=node,
                token=stat.czxid,
                session_id=stat.ephemeral_owner,
                data=data,
                is_leader=leads,
                priority=c.priority,
                recipe=c.recipe,
                is_next=head and not leads,
                term_started_at=record.started_at if leads and record is not None and recorded else None,
            )
        )
    return participants


@dataclass(slots=True)
class OwnNode:
    """What leading needs to know of our own node, and the watch on it."""

    node: str
    change: asyncio.Future[None]
    """Resolves at the node's next change or deletion."""
    raw: bytes
    stat: Stat

    def cancel(self) -> None:
        """Stop watching our node (we are not leading with it, or not yet)."""
        self.change.cancel()


@dataclass(slots=True)
class Waiting:
    """The contender we wait on, as read when its watch was set, and our node if it is next.

    ``own`` is set when the contender we wait on was the head of the queue as we listed it:
    our node, read and watched in the same round trip. When that head's deletion is notified
    while ``own.change`` has not fired and the session still holds its lease, we are first and
    our node is ours, with no further request (see :meth:`Election._contend`):

    - nobody can have come before us since the listing: sequence numbers and czxids only grow,
      and a node named to sort before ours with a later czxid is not a contender (:func:`genuine`);
    - our node still exists and is our session's: its deletion would have been notified to
      ``own.change`` before the head's, because ZooKeeper delivers a session's watch events in
      the order of the changes, and aiozk resolves them in that order; and a session whose
      lease holds cannot have been expired (the lease ends before the server may expire it).
    """

    node: str
    deleted: asyncio.Future[None]
    """Resolves at the node's deletion."""
    changed: asyncio.Future[None]
    """Resolves at a change of its data: a step-down request for the head, written after any
    handover request (see .protocol), so that what we listed may no longer say who is next."""
    raw: bytes
    stat: Stat
    own: OwnNode | None

    def cancel(self) -> None:
        self.deleted.cancel()
        self.changed.cancel()
        if self.own is not None:
            self.own.cancel()


@dataclass(frozen=True, slots=True)
class Position:
    """Where our node stands: every contender in order, ours, and the nodes before it."""

    node: str
    mine: Contender
    contenders: tuple[Contender, ...]
    preceding: tuple[str, ...]
    path_has_data: bool
    """Whether the election path holds data (a handover request) worth reading."""
    term_recorded: bool
    """Whether the listing showed a term record (``_term``): a head that saw none and leads
    records the first term without reading one (only a leader writes it)."""

    @property
    def prioritized(self) -> bool:
        """Whether any contender has a priority: who leads then takes a look at the queue."""
        return any(c.priority for c in self.contenders)

    def without(self, node: str) -> Position:
        """This position once ``node`` (one before ours) is gone."""
        child = node.rpartition("/")[2]
        return dataclasses.replace(
            self,
            contenders=tuple(c for c in self.contenders if c.name != child),
            preceding=tuple(p for p in self.preceding if p != node),
        )


class Candidacy:
    """One node of one session in the queue under ``path``, named as ``recipe`` names them."""

    def __init__(
        self,
        zk: ZooKeeper,
        path: str,
        payload: bytes,
        *,
        session_id: int,
        priority: int = 0,
        recipe: Recipe = Recipe.NATIVE,
        acl: ElectionACL | None = None,
        identities: Identities | None = None,
    ) -> None:
        self.zk = zk
        self.acl = acl
        self.identities = identities
        self.path = path
        self.payload = payload
        self.session_id = session_id
        self.priority = priority
        self.recipe = recipe
        self.guid = new_guid(recipe)
        self._attempted = False
        self.notified = False
        """Whether this candidacy told a lesser head of its priority (see .protocol)."""
        self.node: str | None = None
        self.czxid: int | None = None
        """Our node's czxid: a contender created after it cannot be our predecessor."""

    def is_mine(self, contender: Contender) -> bool:
        return contender.guid == self.guid and contender.recipe is self.recipe

    async def join(self) -> str:
        """Make sure our node exists, creating it (and the path) if needed; returns its path.

        A node we already have on this session is not read again here: :meth:`position` lists
        the queue next, which verifies it (NoNodeError if it is gone) in the same request.
        """
        if self.node is not None:
            return self.node
        while True:
            # A guid nobody has used yet names no node: the first create needs no listing.
            # After any attempt (a create cut off by a lost connection may have landed), look.
            mine = await self._find_mine() if self._attempted else None
            self._attempted = True
            if mine is not None:
                self.node = f"{self.path}/{mine.name}"
                stat = await self.zk.exists(self.node)
                if stat is None:
                    continue
                await self._own_or_give_up(stat)
                self.czxid = stat.czxid
                return self.node
            try:
                await self._check_path_acl()
                prefix = node_prefix(self.recipe, self.guid, self.priority)
                self.node, created = await self.zk.create_ephemeral_sequential(
                    f"{self.path}/{prefix}",
                    self.payload,
                    None if self.acl is None else node_acl(self.acl, self._ours()),
                )
                await self._own_or_give_up(created)
                self.czxid = created.czxid
                return self.node
            except NoNodeError:
                # The election path is missing (first use, or deleted mid-run): recreate it. A
                # create refused so created nothing: the next one needs no listing either.
                self._attempted = False
                await self.zk.ensure_path(
                    self.path, None if self.acl is None else path_acl(self.acl, self._ours())
                )

    def _ours(self) -> tuple[str, ...]:
        return () if self.identities is None else self.identities.ids

    async def _check_path_acl(self) -> None:
        """Refuse (NoAuthError) a path whose ACL cannot let us delete our own node, before
        our node enters the queue: we could not resign or hand over, only close the session."""
        if self.identities is None:
            return
        entries = await self.zk.get_acl(self.path)
        if not can_delete_children(entries, self.identities.ids, self.identities.unknown_schemes):
            who = ", ".join(self.identities.ids) or "an unauthenticated session"
            raise NoAuthError(
                f"the ACL of {self.path} ({describe(entries)}) gives us ({who}) no DELETE: we could "
                "not remove our own node to resign; grant DELETE to the participants (--acl-participant)"
            )

    async def position(self) -> Position:
        """Our node's place in the queue; raises NoNodeError if our node is gone."""
        children, path_stat = await self.zk.children_and_stat(self.path)
        contenders = parse_contenders(children)
        ours = [c for c in contenders if self.is_mine(c)]
        if not ours:
            self.node = None
            raise NoNodeError(f"our node under {self.path} is gone")
        mine, orphans = ours[0], ours[1:]
        node = f"{self.path}/{mine.name}"
        if node != self.node:
            # An orphan of a retried create is older than the node we knew: lead with that.
            self.node, self.czxid = node, None
        for orphan in orphans:
            # A create that aiozk retried after a connection loss left a second node of ours.
            await self._delete_quietly(f"{self.path}/{orphan.name}")
        preceding = tuple(f"{self.path}/{c.name}" for c in contenders if c < mine and not self.is_mine(c))
        others = tuple(c for c in contenders if not self.is_mine(c))
        ordered = tuple(sorted((*others, mine)))
        return Position(
            node, mine, ordered, preceding, path_stat.data_length > 0, terms.TERM_NODE in children
        )

    async def read_own(self) -> OwnNode:
        """Our node: owner, data and czxid, watched from now on."""
        node = self.node
        assert node is not None
        raw, stat, change = await self.zk.watched_get(node)
        return OwnNode(node, change, raw, stat)

    async def watch_predecessor(
        self, preceding: Sequence[str], ignored: Callable[[str, str], None]
    ) -> Waiting | None:
        """Watch the nearest genuine live contender before ours; None when we are first.

        A persistent node is nobody's candidacy, and a node created after ours (higher
        czxid) lied about its place with its name: both are skipped, not waited on, and
        reported to ``ignored(node, why)``. The stat comes with the watch we set anyway, so
        checking costs no request.

        When the contender we wait on is the head of the queue (the first of ``preceding``),
        our own node is read and watched in the same round trip: see :class:`Waiting` for why
        that lets its deletion promote us without another request.
        """
        if self.czxid is None and self.node is not None:
            stat = await self.zk.exists(self.node)
            if stat is None:
                raise NoNodeError(f"our node {self.node} is gone")
            self.czxid = stat.czxid
        for node in reversed(preceding):
            head = node == preceding[0]
            try:
                waiting = await (self._watch_with_own(node) if head else self._watch(node))
            except NoNodeError:
                continue
            stat = waiting.stat
            if stat.ephemeral_owner == 0 or (self.czxid is not None and stat.czxid > self.czxid):
                waiting.cancel()
                ignored(node, "persistent" if stat.ephemeral_owner == 0 else "created after ours")
                continue
            return waiting
        return None

    async def _watch(self, node: str) -> Waiting:
        raw, stat, deleted, changed = await self.zk.watched_node(node)
        return Waiting(node, deleted, changed, raw, stat, None)

    async def _watch_with_own(self, node: str) -> Waiting:
        """The head's node and ours, both read and watched, in one round trip (NoNodeError if the
        head is gone; our own node gone or no longer ours gives no :class:`OwnNode`)."""
        own, head = await asyncio.gather(self.read_own(), self._watch(node), return_exceptions=True)
        if isinstance(head, BaseException):
            if isinstance(own, OwnNode):
                own.cancel()
            raise head
        if isinstance(own, OwnNode) and own.stat.ephemeral_owner == self.session_id:
            head.own = own
            return head
        if isinstance(own, OwnNode):
            own.cancel()
        elif not isinstance(own, NoNodeError):
            head.cancel()
            raise own
        return head

    async def leave(self) -> None:
        """Delete our node (best effort: a closed session deletes it anyway)."""
        if self.node is not None:
            await self._delete_quietly(self.node)
            self.node = None

    async def _own_or_give_up(self, stat: Stat) -> None:
        """Raise SessionLostError, deleting the node, unless our session owns it.

        aiozk retries a request cut off by a lost connection on whatever session exists by
        then: a create sent before our session expired can land on the next one, owned by a
        live session yet by no candidacy of ours. Left alone, it would block the queue for as
        long as that session lives.
        """
        if stat.ephemeral_owner == self.session_id:
            return
        node, self.node, self.czxid = self.node, None, None
        if node is not None and stat.ephemeral_owner == self.zk.session_id:
            await self._delete_quietly(node)
        raise SessionLostError(f"{node} was created on another session than this candidacy's")

    async def _find_mine(self) -> Contender | None:
        try:
            children = await self.zk.children(self.path)
        except NoNodeError:
            return None
        ours = [c for c in parse_contenders(children) if self.is_mine(c)]
        return ours[0] if ours else None

    async def _delete_quietly(self, node: str) -> None:
        try:
            await self.zk.delete(node)
        except NoNodeError:
            pass
        except ZooKeeperError:
            # Retried at the next position() call or cleaned by the session's end.
            pass
