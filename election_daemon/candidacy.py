"""The ZooKeeper recipe: one candidacy's node in the queue, ordering, and reading the queue.

Each candidacy creates an ephemeral sequential node ``<path>/_c_<guid>[_p<priority>]-<sequence>``
(the priority is in the name so that one listing shows every contender's priority). The
guid is new for every candidacy, so a create retried after a connection loss finds its own
node instead of leaving a second one that would block the queue (ZooKeeper's recipes,
"Recoverable Errors and the GUID"; Curator's protected mode). Nodes are ordered by sequence
number; the node with the lowest sequence leads, and each contender waits only on the
nearest node before its own. Names that are not ours are ignored, and so are persistent
nodes that mimic ours (a crafted node must not stall the queue).

This module knows nothing of sessions' liveness or of leadership: :mod:`election` decides.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._zk import Stat, ZooKeeper
from .errors import NoNodeError, ZooKeeperError

__all__ = [
    "Candidacy",
    "Contender",
    "Handover",
    "Participant",
    "decode_node_data",
    "encode_node_data",
    "read_handover",
    "read_queue",
    "write_handover",
]

NODE_PREFIX = "_c_"
_NODE_NAME = re.compile(r"^_c_(?P<guid>[0-9a-f]{32})(?:_p(?P<prio>-?\d{1,10}))?-(?P<seq>-?\d{10})$")


@dataclass(frozen=True, slots=True, order=True)
class Contender:
    """A node in the queue, by name alone (no stat)."""

    sequence: int
    name: str
    guid: str
    priority: int = 0


def parse_contenders(children: Iterable[str]) -> list[Contender]:
    """Our nodes among ``children``, in queue order (lowest sequence first)."""
    found = []
    for name in children:
        m = _NODE_NAME.match(name)
        if m is not None:
            found.append(Contender(int(m["seq"]), name, m["guid"], int(m["prio"] or 0)))
    found.sort()
    return found


def encode_node_data(identity: str, data: Any) -> bytes:
    """The payload published with a node: identity plus user data (bytes or JSON)."""
    doc: dict[str, Any] = {"id": identity}
    if isinstance(data, bytes | bytearray):
        doc["data_b64"] = base64.b64encode(bytes(data)).decode("ascii")
    elif data is not None:
        doc["data"] = data
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_node_data(raw: bytes) -> tuple[str | None, Any]:
    """(identity, data) from a node's payload; foreign payloads give (None, raw bytes)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, raw
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        return None, raw
    if "data_b64" in doc:
        try:
            return doc["id"], base64.b64decode(doc["data_b64"], validate=True)
        except (ValueError, TypeError):
            return doc["id"], None
    return doc["id"], doc.get("data")


@dataclass(frozen=True, slots=True)
class Participant:
    """A contender as others see it: who, where in the queue, and its would-be token."""

    id: str | None
    node: str
    token: int
    session_id: int
    data: Any
    is_leader: bool
    priority: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = self.data
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode("ascii")
        return {
            "id": self.id,
            "node": self.node,
            "token": self.token,
            "session_id": f"0x{self.session_id:x}",
            "data": data,
            "is_leader": self.is_leader,
            "priority": self.priority,
        }


async def read_queue(zk: ZooKeeper, path: str) -> list[Participant]:
    """Every live contender under ``path`` in queue order, the leader first.

    Persistent look-alikes and nodes that vanish while being read are left out.
    """
    try:
        children = await zk.children(path)
    except NoNodeError:
        return []
    contenders = parse_contenders(children)

    async def _read(c: Contender) -> tuple[Contender, bytes, Stat] | None:
        try:
            raw, stat = await zk.get(f"{path}/{c.name}")
        except NoNodeError:
            return None
        return c, raw, stat

    found = [r for r in await asyncio.gather(*(_read(c) for c in contenders)) if r is not None]
    participants: list[Participant] = []
    for c, raw, stat in found:
        if stat.ephemeral_owner == 0:
            continue
        identity, data = decode_node_data(raw)
        participants.append(
            Participant(
                id=identity,
                node=f"{path}/{c.name}",
                token=stat.czxid,
                session_id=stat.ephemeral_owner,
                data=data,
                is_leader=not participants,
                priority=c.priority,
            )
        )
    return participants


def step_down_request(raw: bytes) -> dict[str, Any] | None:
    """The operator's step-down request written into a leader's node data, if any."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    request = doc.get("step_down") if isinstance(doc, dict) else None
    return request if isinstance(request, dict) else None


def with_step_down_request(raw: bytes, request_id: str) -> bytes:
    """A leader's node data with a step-down request added, its identity and data kept."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        doc = {}
    doc["step_down"] = {"request": request_id}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Handover:
    """A request that leadership go next to the node ``to`` (kept in the election path's data)."""

    to: str
    request: str
    version: int


async def read_handover(zk: ZooKeeper, path: str) -> Handover | None:
    """The pending handover under ``path``, if any (whether its target still exists or not)."""
    try:
        raw, stat = await zk.get(path)
    except NoNodeError:
        return None
    try:
        doc = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("handover_to"), str):
        return None
    return Handover(doc["handover_to"], str(doc.get("request", "")), stat.version)


async def write_handover(zk: ZooKeeper, path: str, to: str) -> str:
    """Ask that the node ``to`` lead next: contenders before it step aside. Returns the request id."""
    request = uuid.uuid4().hex
    doc = {"handover_to": to, "request": request}
    await zk.set(path, json.dumps(doc, separators=(",", ":")).encode("utf-8"))
    return request


async def clear_handover(zk: ZooKeeper, path: str, handover: Handover) -> None:
    """Remove ``handover`` unless another request replaced it meanwhile."""
    with contextlib.suppress(ZooKeeperError):
        await zk.set(path, b"", version=handover.version)


@dataclass(frozen=True, slots=True)
class Position:
    """Where our node stands: every contender in order, ours, and the nodes before it."""

    node: str
    mine: Contender
    contenders: tuple[Contender, ...]
    preceding: tuple[str, ...]
    path_has_data: bool
    """Whether the election path holds data (a handover request) worth reading."""


class Candidacy:
    """One node of one session in the queue under ``path``."""

    def __init__(
        self, zk: ZooKeeper, path: str, payload: bytes, *, session_id: int, priority: int = 0
    ) -> None:
        self.zk = zk
        self.path = path
        self.payload = payload
        self.session_id = session_id
        self.priority = priority
        self.guid = uuid.uuid4().hex
        self.node: str | None = None
        self.created_stat: Stat | None = None

    async def join(self) -> str:
        """Make sure our node exists, creating it (and the path) if needed; returns its path."""
        while True:
            mine = await self._find_mine()
            if mine is not None:
                self.node = f"{self.path}/{mine.name}"
                return self.node
            try:
                suffix = f"_p{self.priority}" if self.priority else ""
                self.node, self.created_stat = await self.zk.create_ephemeral_sequential(
                    f"{self.path}/{NODE_PREFIX}{self.guid}{suffix}-", self.payload
                )
                return self.node
            except NoNodeError:
                # The election path is missing (first use, or deleted mid-run): recreate it.
                await self.zk.ensure_path(self.path)

    async def position(self) -> Position:
        """Our node's place in the queue; raises NoNodeError if our node is gone."""
        children, path_stat = await self.zk.children_and_stat(self.path)
        contenders = parse_contenders(children)
        ours = [c for c in contenders if c.guid == self.guid]
        if not ours:
            self.node = None
            raise NoNodeError(f"our node under {self.path} is gone")
        mine, orphans = ours[0], ours[1:]
        self.node = f"{self.path}/{mine.name}"
        for orphan in orphans:
            # A create that aiozk retried after a connection loss left a second node of ours.
            await self._delete_quietly(f"{self.path}/{orphan.name}")
        preceding = tuple(f"{self.path}/{c.name}" for c in contenders if c.sequence < mine.sequence)
        others = tuple(c for c in contenders if c.guid != self.guid)
        ordered = tuple(sorted((*others, mine)))
        return Position(self.node, mine, ordered, preceding, path_stat.data_length > 0)

    async def leave(self) -> None:
        """Delete our node (best effort: a closed session deletes it anyway)."""
        if self.node is not None:
            await self._delete_quietly(self.node)
            self.node = None

    async def _find_mine(self) -> Contender | None:
        try:
            children = await self.zk.children(self.path)
        except NoNodeError:
            return None
        ours = [c for c in parse_contenders(children) if c.guid == self.guid]
        return ours[0] if ours else None

    async def _delete_quietly(self, node: str) -> None:
        try:
            await self.zk.delete(node)
        except NoNodeError:
            pass
        except ZooKeeperError:
            # Retried at the next position() call or cleaned by the session's end.
            pass
