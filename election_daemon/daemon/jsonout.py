"""Strict JSON for everything we print or serve: never ``NaN`` or ``Infinity``, never a crash.

What we print carries values read from ZooKeeper, which any client with write access to the
election path controls. Python's ``json.dumps`` writes ``NaN`` and ``Infinity`` (which no strict
parser accepts) and raises on types it does not know; :func:`dumps` instead writes non-finite
numbers as ``null``, bytes as base64 text and anything else unknown as its ``repr``, and falls
back to a placeholder string for a value too deep to encode. Used by ``status --json``,
``watch --json``, the daemon's ``/status``, the dashboard and the JSON log renderer.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "log_serializer", "sanitize"]

_MAX_DEPTH = 64
_TOO_DEEP = "<too deep>"
_MAX_INT_BITS = 10_000


def _default(value: object) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def sanitize(value: Any, depth: int = 0) -> Any:  # noqa: PLR0911 (one return per JSON type)
    """``value`` with non-finite floats as ``None`` and unknown types made JSON (bounded depth)."""
    if depth > _MAX_DEPTH:
        return _TOO_DEEP
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
        return f"<integer of {value.bit_length()} bits>"  # beyond what int-to-text converts
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(key): sanitize(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitize(item, depth + 1) for item in value]
    return _default(value)


def dumps(value: Any, *, ensure_ascii: bool = True, **kwargs: Any) -> str:
    """Strict JSON text of ``value``; never raises for what it is given (see the module doc)."""
    kwargs.setdefault("default", _default)
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=ensure_ascii, **kwargs)
    except (ValueError, TypeError, RecursionError):
        pass
    try:
        return json.dumps(sanitize(value), allow_nan=False, ensure_ascii=ensure_ascii, **kwargs)
    except (ValueError, TypeError, RecursionError) as e:
        return json.dumps(f"<unserializable: {type(e).__name__}>")


def log_serializer(obj: Any, **kwargs: Any) -> str:
    """A ``serializer`` for structlog's ``JSONRenderer``: strict, and a log line never fails.

    A line whose fields cannot be encoded even once sanitized keeps its schema keys and says so.
    """
    fallback: Callable[[object], Any] | None = kwargs.pop("default", None)

    def default(value: object) -> Any:
        if fallback is not None:
            try:
                return fallback(value)
            except Exception:
                pass
        return _default(value)

    try:
        return json.dumps(obj, allow_nan=False, default=default, **kwargs)
    except (ValueError, TypeError, RecursionError):
        pass
    try:
        return json.dumps(sanitize(obj), allow_nan=False, default=default, **kwargs)
    except (ValueError, TypeError, RecursionError) as e:
        kept = {
            key: item
            for key, item in (obj.items() if isinstance(obj, dict) else ())
            if isinstance(item, str | int | bool) or item is None
        }
        kept["log_error"] = f"fields could not be encoded: {type(e).__name__}"
        return json.dumps(kept, **kwargs)
