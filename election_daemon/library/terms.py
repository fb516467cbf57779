"""Published terms: who took leadership, with which token, since when, and how it ended.

The head of the queue is not the leader until it has taken over: it may defer (a handover, a
priority), its session may be in doubt, it may be a crashed leader's node waiting for its
session to expire. So a participant that takes leadership records its term in the persistent
node ``<path>/_term`` (a name without a sequence number: no recipe counts it as a contender):

    {"term": {"token": 4294967311, "id": "billing-a", "node": "<path>/_c_…-0000000007",
              "session_id": "0x100000e1c6a0003", "started_at": 1796089316.27,
              "session_timeout_s": 10.0},
     "ended": null,
     "previous": {"token": 4294967300, "id": "billing-b", "ended": "resigned"}}

- **Written only by the holder**: in one multi with a check that its node still exists, so a
  leader whose node is gone (its term over, whatever it believes) cannot write it.
- **Ended on a requested exit**: a resign, a step-down, a handover or a stop writes
  ``"ended": {"reason": "resigned", "at": <unix time>}`` and deletes the node in one multi,
  so the record never says "leading" for a node that is gone because it left. A record whose
  node is gone without an ``ended`` is a term that ended by a session expiry or a deleted node.
- **Untrusted when read**: decoding is total and strict (:mod:`.payload`); the record counts
  only for the node it names, with that node's czxid as the token and its ephemeral owner as
  the session. Anything else is no record.
- **Chained**: ``previous`` is the term it replaced as its leader found it (``ended`` null when
  that term ended without saying why: a crash, a deleted node), so an observer that missed
  the old record still names the cause of the change.

Observers show as leader only the head whose term is recorded (a foreign recipe's head,
which records nothing of ours, is shown as leader by position and flagged so); the next
leader reads the record it replaces to name the previous leader, its token and its last proof
of life. This module is pure encoding plus thin ZooKeeper wrappers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from election_daemon.errors import NodeExistsError, NoNodeError
from election_daemon.library import payload
from election_daemon.library.events import REQUESTED_REVOCATIONS, Reason
from election_daemon.library.limits import MAX_IDENTITY_BYTES
from election_daemon.library.recipes import parse_contender

if TYPE_CHECKING:
    from election_daemon.library._zk import ZooKeeper
    from election_daemon.library.acl import AclEntry

__all__ = [
    "TERM_NODE",
    "Previous",
    "TermRecord",
    "decode",
    "encode",
    "end_and_leave",
    "publish",
    "read",
    "read_slot",
    "term_path",
]

TERM_NODE = "_term"
"""The record's node name under the election path."""

# Reasons a recorded term may end with: the requested exits (others leave no "ended").
_ENDINGS = REQUESTED_REVOCATIONS


def term_path(path: str) -> str:
    return f"{path}/{TERM_NODE}"


@dataclass(frozen=True, slots=True)
class Previous:
    """The term a recorded term replaced: its token, leader and recorded end (None: unsaid)."""

    token: int
    id: str
    ended: Reason | None


@dataclass(frozen=True, slots=True)
class TermRecord:
    """One recorded term, as its leader wrote it."""

    token: int
    id: str
    node: str
    session_id: int
    started_at: float
    """Unix time (the leader's clock) at which the term began."""
    session_timeout_s: float
    """The leader's negotiated session timeout: a crashed leader's session outlives it by this much."""
    ended: Reason | None = None
    ended_at: float | None = None
    previous: Previous | None = None

    def ended_by(self, reason: Reason, at: float) -> TermRecord:
        return replace(self, ended=reason, ended_at=at)

    def names(self, node: str, token: int, session_id: int) -> bool:
        """Whether this is the live term of ``node`` (czxid ``token``, owned by ``session_id``)."""
        return self.ended is None and (self.node, self.token, self.session_id) == (node, token, session_id)


def encode(record: TermRecord) -> bytes:
    term = {
        "token": record.token,
        "id": record.id,
        "node": record.node,
        "session_id": f"0x{record.session_id:x}",
        "started_at": round(record.started_at, 6),
        "session_timeout_s": record.session_timeout_s,
    }
    ended = None if record.ended is None else {"reason": record.ended.value, "at": record.ended_at}
    doc: dict[str, Any] = {"term": term, "ended": ended}
    if record.previous is not None:
        p = record.previous
        doc["previous"] = {"token": p.token, "id": p.id, "ended": None if p.ended is None else p.ended.value}
    return payload.dumps(doc).encode("utf-8")


def decode(path: str, raw: bytes) -> TermRecord | None:
    """The well-formed record in ``raw`` for a node under ``path``, else None (never raises)."""
    try:
        doc = payload.loads(raw)
    except payload.PayloadError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("term"), dict):
        return None
    term: dict[str, Any] = doc["term"]
    token, ident, node = term.get("token"), term.get("id"), term.get("node")
    started_at, timeout_s = term.get("started_at"), term.get("session_timeout_s")
    session_id = _hex(term.get("session_id"))
    if not (
        _int(token)
        and _identity(ident)
        and _our_node(path, node)
        and session_id is not None
        and _time(started_at)
        and _time(timeout_s)
    ):
        return None
    assert isinstance(token, int) and isinstance(node, str) and isinstance(ident, str)
    assert isinstance(started_at, int | float) and isinstance(timeout_s, int | float)
    record = TermRecord(
        token,
        ident,
        node,
        session_id,
        float(started_at),
        float(timeout_s),
        previous=_previous(doc.get("previous")),
    )
    ended = doc.get("ended")
    if ended is None:
        return record
    if not isinstance(ended, dict) or ended.get("reason") not in _ENDINGS or not _time(ended.get("at")):
        return None
    return record.ended_by(Reason(ended["reason"]), float(ended["at"]))


def _previous(value: object) -> Previous | None:
    if not isinstance(value, dict):
        return None
    token, ident, ended = value.get("token"), value.get("id"), value.get("ended")
    if not (_int(token) and _identity(ident) and (ended is None or ended in _ENDINGS)):
        return None
    assert isinstance(token, int) and isinstance(ident, str)
    return Previous(token, ident, None if ended is None else Reason(ended))


def _identity(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value.encode("utf-8", "replace")) <= MAX_IDENTITY_BYTES


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _time(value: object) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0  # type: ignore[arg-type, operator]


def _hex(value: object) -> int | None:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 18:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def _our_node(path: str, node: object) -> bool:
    if not isinstance(node, str) or not node.startswith(f"{path}/"):
        return False
    child = node[len(path) + 1 :]
    return "/" not in child and parse_contender(child) is not None


# -- ZooKeeper ---------------------------------------------------------------------------


async def read(zk: ZooKeeper, path: str) -> TermRecord | None:
    """The recorded term under ``path``, if any well-formed one."""
    record, _ = await read_slot(zk, path)
    return record


async def read_slot(zk: ZooKeeper, path: str) -> tuple[TermRecord | None, bool]:
    """The recorded term under ``path`` (if well-formed), and whether its node exists at all:
    :func:`publish` then writes it with one multi, not two."""
    try:
        raw, _ = await zk.get(term_path(path))
    except NoNodeError:
        return None, False
    return decode(path, raw), True


async def publish(
    zk: ZooKeeper, path: str, record: TermRecord, acl: Sequence[AclEntry] | None, *, exists: bool = True
) -> None:
    """Record ``record`` as the live term, only while its node exists (GuardFailedError if not).

    ``exists``: whether the record's node was there when last read; a guess that a concurrent
    writer proved wrong costs one more multi, never a wrong record.
    """
    data = encode(record)
    if exists:
        try:
            await zk.guarded_set(record.node, term_path(path), data)
            return
        except NoNodeError:
            pass  # deleted since (by hand): create it
    try:
        await zk.guarded_create(record.node, term_path(path), data, acl)
    except NodeExistsError:
        await zk.guarded_set(record.node, term_path(path), data)


async def end_and_leave(zk: ZooKeeper, path: str, record: TermRecord, reason: Reason, at: float) -> None:
    """Mark ``record`` ended by ``reason`` and delete its node, atomically."""
    await zk.set_and_delete(term_path(path), encode(record.ended_by(reason, at)), record.node)
