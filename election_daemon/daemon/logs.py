"""Structured logs: structlog set up for JSON lines or a console, and the fixed log schema.

The schema is an interface, like the CLI: every line carries the keys in
:data:`SCHEMA_KEYS` (``null`` when unknown), whatever its event. Transition events name
the edge (``connected``, ``joined``, ``elected``, ``revoked``, ``session_lost``, ...);
process events (``child_started``, ``child_exited``, ...) carry the election's state at
that moment. Other keys (``pid``, ``exit_code``, ``duration_s``, ...) may be added; keys
are never renamed or removed within a major version.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

from election_daemon.daemon.jsonout import log_serializer

__all__ = ["SCHEMA_KEYS", "SCHEMA_VERSION", "configure_logging", "get_logger"]

SCHEMA_VERSION = 1

SCHEMA_KEYS = (
    "event",
    "state",
    "previous_state",
    "reason",
    "path",
    "id",
    "node",
    "token",
    "session_id",
    "timestamp",
)

Context = Callable[[], dict[str, Any]]


def _schema_filler(context: Context | None) -> structlog.typing.Processor:
    def fill(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        try:
            current = context() if context is not None else {}
        except Exception:  # the view must never cost a log line
            current = {}
        ordered: dict[str, Any] = {key: event_dict.pop(key, current.get(key)) for key in SCHEMA_KEYS}
        if ordered["previous_state"] is None:
            ordered["previous_state"] = ordered["state"]
        ordered.update(event_dict)
        # Every line gets CLOCK_MONOTONIC, comparable across the processes of one host.
        ordered.setdefault("monotonic_s", round(time.monotonic(), 6))
        return ordered

    return fill


def _name_library_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Lines from stdlib loggers (aiozk, the library's modules) get a fixed event name."""
    event_dict["message"] = event_dict.pop("event", None)
    event_dict["event"] = "log"
    return event_dict


def configure_logging(
    log_format: str,
    *,
    context: Context | None = None,
    stream: TextIO | None = None,
    level: int = logging.INFO,
) -> None:
    """Send structlog and stdlib logging (aiozk's too) to ``stream`` as JSON lines or console text.

    ``context`` returns the daemon's current view (state, path, id, node, token, session_id)
    used to fill schema keys an event does not set itself.
    """
    out = stream if stream is not None else sys.stdout
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
        _schema_filler(context),
    ]
    renderer: structlog.typing.Processor
    if log_format == "json":
        # Strict JSON (no NaN or Infinity), and a value that cannot be encoded never loses the line.
        renderer = structlog.processors.JSONRenderer(serializer=log_serializer, sort_keys=False)
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # aiozk and this package's library modules log through the stdlib; route them here too.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                _name_library_event,
                structlog.stdlib.add_logger_name,
                *shared,
                structlog.stdlib.ExtraAdder(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiozk logs every reconnect attempt with a traceback; the session edges say it better.
    logging.getLogger("aiozk").setLevel(logging.CRITICAL)


def get_logger(**initial: Any) -> Any:
    """A structlog logger bound to ``initial`` values."""
    return structlog.get_logger(**initial)
