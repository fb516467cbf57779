"""The one JSON codec for bytes that come from, or go to, ZooKeeper.

Every byte read from ZooKeeper is untrusted: any client with write access to the election
path can put anything in a node. Python's ``json`` module recurses once per nesting level
(1,500 levels of ``[`` raise ``RecursionError``), accepts ``NaN`` and ``Infinity`` and turns
``1e999`` into ``inf``, none of which may reach the election loop or an observer's output.
So decoding here is bounded (size, nesting depth), strict (RFC 8259 numbers only) and total
(invalid input raises :class:`PayloadError`, a ``ValueError``, and nothing else), and our own
data is checked against the very same limits before it is published, so that what we write
is always something every one of our readers accepts.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from election_daemon.errors import ConfigError

__all__ = ["MAX_DATA_BYTES", "MAX_DEPTH", "PayloadError", "check_data", "dumps", "loads"]

MAX_DATA_BYTES = 960 * 1024
"""Largest payload we publish or decode, in bytes of compact UTF-8 JSON. ZooKeeper's default
``jute.maxbuffer`` is 1 MiB for the whole request, which also carries the path and the ACL."""

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects we publish or decode."""

# A JSON string (escapes included), and the brackets that remain once strings are blanked.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class PayloadError(ValueError):
    """The bytes are not a payload we accept: too large, too deep, not UTF-8, not strict JSON."""


def _nesting_depth(text: str, limit: int) -> int:
    """How deep ``text`` nests, counted without recursion (stops counting past ``limit``)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError(f"{text} does not fit a finite number")
    return value


def loads(raw: bytes | str, *, max_bytes: int = MAX_DATA_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Decode strict, bounded JSON; raises :class:`PayloadError` for anything else."""
    if len(raw) > max_bytes:
        raise PayloadError(f"{len(raw)} bytes, more than the limit of {max_bytes}")
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise PayloadError(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    else:
        text = raw
    depth = _nesting_depth(text, max_depth)
    if depth > max_depth:
        raise PayloadError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except PayloadError:
        raise
    except (ValueError, RecursionError) as e:  # RecursionError only if the depth scan erred
        raise PayloadError(f"not valid JSON ({e})") from None


def dumps(value: Any) -> str:
    """Compact, strict JSON text (no NaN or Infinity); raises ValueError or TypeError otherwise."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_data(value: Any, field: str = "data") -> bytes:
    """Our own data as the bytes we would publish, if every reader of ours can decode them.

    Raises :class:`ConfigError` naming ``field`` otherwise (the same limits as :func:`loads`).
    """
    try:
        encoded = dumps(value).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise ConfigError(field, f"must be strict JSON (no NaN or Infinity): {e}") from None
    try:
        loads(encoded)
    except PayloadError as e:
        raise ConfigError(field, f"is refused: {e}") from None
    return encoded
