"""The step-down and handover protocol: the two documents that move leadership on request.

Both travel through ZooKeeper, so they work whatever host the leader runs on. This module
is their one home: ``election-daemon step-down`` writes them, the election reads them.

- **Step-down**: ``{"step_down": {"request": ID}}`` added to the *leader's node* data, beside
  its identity and data. The leader watches its own node and resigns when it sees one.
- **Priority notice**: ``{"priority_notice": true}`` added to the *leader's node* data by a
  contender that joins with a higher priority than the leader's. Without priorities a leader
  does not watch the queue (its changes cannot matter); the notice makes it start.
- **Handover**: ``{"handover_to": NODE, "request": ID}`` as the *election path's* data, where
  ``NODE`` is ``<path>/<child>`` and the child's name ends in a sequence number. Contenders
  before ``NODE`` step aside instead of leading; whoever leads clears it.

``ID`` is a string of 1 to :data:`MAX_REQUEST_ID` characters. The documents are untrusted
(anyone who can write to the path can write them), so decoding is total: anything that is
not exactly a well-formed document (too large, too deep, NaN, wrong types, an oversized id,
a target outside the path) is *no request*, never an exception. Whether the target is a
live contender is for the reader to check against ZooKeeper, not for this module.

The encode/decode functions are pure; :func:`read_handover`, :func:`write_handover` and
:func:`clear_handover` are their thin ZooKeeper wrappers.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from election_daemon.errors import ConfigError, NoNodeError, ZooKeeperError
from election_daemon.library import payload
from election_daemon.library.recipes import parse_contender

if TYPE_CHECKING:
    from election_daemon.library._zk import ZooKeeper

__all__ = [
    "MAX_REQUEST_ID",
    "Handover",
    "asks_the_leader",
    "clear_handover",
    "decode_handover",
    "encode_handover",
    "new_request_id",
    "notify_priority",
    "priority_notice",
    "read_handover",
    "step_down_request",
    "with_step_down_request",
    "write_handover",
]

MAX_REQUEST_ID = 64
"""Longest request id, in characters."""


def new_request_id() -> str:
    """A fresh, unique request id."""
    return uuid.uuid4().hex


def _request_id(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_REQUEST_ID else None


def _check_request_id(request_id: object) -> str:
    checked = _request_id(request_id)
    if checked is None:
        raise ConfigError("request", f"must be a string of 1 to {MAX_REQUEST_ID} characters")
    return checked


def _document(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as a JSON object, or None for anything else (never raises)."""
    try:
        doc = payload.loads(raw)
    except payload.PayloadError:
        return None
    return doc if isinstance(doc, dict) else None


# -- step-down: in the leader's node --------------------------------------------------


def step_down_request(raw: bytes) -> str | None:
    """The id of a well-formed step-down request in a leader's node data, if any.

    ``{"step_down": {"request": "<1 to 64 characters>"}}`` beside the node's identity and
    data. Anything else is not a request.
    """
    return _step_down_request(_document(raw))


def _step_down_request(doc: dict[str, Any] | None) -> str | None:
    request = doc.get("step_down") if doc is not None else None
    return _request_id(request.get("request")) if isinstance(request, dict) else None


def asks_the_leader(raw: bytes) -> bool:
    """Whether a leader's node data carries a step-down request or a priority notice (one
    decoding of the data, for the failover's path)."""
    doc = _document(raw)
    return _step_down_request(doc) is not None or _priority_notice(doc)


def with_step_down_request(raw: bytes, request_id: str) -> bytes:
    """A leader's node data with a step-down request added, its identity and data kept.

    Raises :class:`ConfigError` for a request id the reader would not accept.
    """
    request_id = _check_request_id(request_id)
    doc = _document(raw) or {}
    doc["step_down"] = {"request": request_id}
    return payload.dumps(doc).encode("utf-8")


# -- priority notice: in the leader's node -------------------------------------------


def priority_notice(raw: bytes) -> bool:
    """Whether a leader's node data carries ``{"priority_notice": true}``: a contender with a
    higher priority joined, and the leader should watch the queue from now on."""
    return _priority_notice(_document(raw))


def _priority_notice(doc: dict[str, Any] | None) -> bool:
    return doc is not None and doc.get("priority_notice") is True


def _with_priority_notice(raw: bytes) -> bytes:
    """A leader's node data with a priority notice added, its identity and data kept."""
    doc = _document(raw) or {}
    doc["priority_notice"] = True
    return payload.dumps(doc).encode("utf-8")


async def notify_priority(zk: ZooKeeper, node: str) -> str | None:
    """Tell the leader at ``node`` that priorities are in use; returns why it could not.

    Best effort: written at the version read, so a concurrent step-down request is never
    overwritten; a node gone needs no notice; data that would grow past what readers decode is
    left alone.
    """
    try:
        raw, stat = await zk.get(node)
        if priority_notice(raw):
            return None
        data = _with_priority_notice(raw)
        if len(data) > payload.MAX_DATA_BYTES:
            return "the leader's node data is too large to add a notice to"
        await zk.set(node, data, version=stat.version)
    except NoNodeError:
        return None
    except ZooKeeperError as e:
        return str(e)
    return None


# -- handover: in the election path's data ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Handover:
    """A request that leadership go next to the node ``to`` (kept in the election path's data)."""

    to: str
    request: str
    version: int
    """The path's data version it was read at: clearing it must not clear a newer one."""


def _target_child(path: str, to: object) -> str | None:
    """The child name ``to`` names under ``path``, if it names a would-be contender there."""
    if not isinstance(to, str) or not to.startswith(f"{path}/"):
        return None
    child = to[len(path) + 1 :]
    if not child or "/" in child or parse_contender(child) is None:
        return None
    return child


def decode_handover(path: str, raw: bytes, version: int = 0) -> Handover | None:
    """The well-formed handover in ``path``'s data ``raw``, if any (its target may be gone)."""
    doc = _document(raw) if raw else None
    if doc is None:
        return None
    to, request = doc.get("handover_to"), _request_id(doc.get("request"))
    if request is None or _target_child(path, to) is None:
        return None
    assert isinstance(to, str)
    return Handover(to, request, version)


def encode_handover(path: str, to: str, request_id: str) -> bytes:
    """The election path's data asking that node ``to`` lead next.

    Raises :class:`ConfigError` for a target that is not a contender's node under ``path``
    or a request id the reader would not accept: we never write what we would not read.
    """
    if _target_child(path, to) is None:
        raise ConfigError("handover_to", f"{to!r} is not a contender's node under {path}")
    request_id = _check_request_id(request_id)
    return payload.dumps({"handover_to": to, "request": request_id}).encode("utf-8")


async def read_handover(zk: ZooKeeper, path: str) -> Handover | None:
    """The well-formed pending handover under ``path``, if any (the reader checks its target)."""
    try:
        raw, stat = await zk.get(path)
    except NoNodeError:
        return None
    return decode_handover(path, raw, stat.version)


async def write_handover(zk: ZooKeeper, path: str, to: str) -> str:
    """Ask that the node ``to`` lead next: contenders before it step aside. Returns the request id."""
    request = new_request_id()
    await zk.set(path, encode_handover(path, to, request))
    return request


async def clear_handover(zk: ZooKeeper, path: str, handover: Handover) -> None:
    """Remove ``handover`` unless another request replaced it meanwhile."""
    with contextlib.suppress(ZooKeeperError):
        await zk.set(path, b"", version=handover.version)
