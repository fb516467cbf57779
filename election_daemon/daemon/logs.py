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
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from election_daemon.daemon.jsonout import log_serializer
from election_daemon.library.events import REQUESTED_REVOCATIONS, Event, Reason
from election_daemon.library.transitions import Transition

__all__ = ["SCHEMA_KEYS", "SCHEMA_VERSION", "configure_logging", "get_logger", "level_of"]

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


def _timestamp(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """ISO 8601 UTC time of the line (``...Z``, as structlog's TimeStamper writes it).

    A line logged after its event passes the event's own time as ``timestamp``, a unix time
    (``elected``, rendered only once the command it started runs): that time is kept.
    """
    at = event_dict.get("timestamp")
    when = datetime.fromtimestamp(at, UTC) if isinstance(at, float) else datetime.now(UTC)
    event_dict["timestamp"] = when.isoformat().replace("+00:00", "Z")
    return event_dict


def _name_library_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Lines from stdlib loggers (aiozk, the library's modules) get a fixed event name."""
    event_dict["message"] = event_dict.pop("event", None)
    event_dict["event"] = "log"
    return event_dict


# The console shows what a person reads: the schema keys that repeat on every line of one
# participant (its path, id, node, session) only where they are news.
_CONSOLE_NEVER = ("node", "monotonic_s", "previous_state")
_CONSOLE_NEWS_ONLY = ("path", "id", "session_id")
_CONSOLE_NEWS = frozenset({"starting", "connected", "reconnected", "session_lost"})


def _compact_for_console(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """One line per event: no nulls, no repeated identity, the state change as ``a→b``.

    A value with a newline (a hook's output, an error's message) stays on the line: the
    renderer quotes any value with white space in it.
    """
    state, previous = event_dict.get("state"), event_dict.get("previous_state")
    if state is not None and previous is not None and previous != state:
        event_dict["state"] = f"{previous}→{state}"
    timestamp = event_dict.get("timestamp")
    if isinstance(timestamp, str) and "T" in timestamp:
        event_dict["timestamp"] = timestamp.split("T", 1)[1][:12]  # HH:MM:SS.mmm, UTC
    hidden: tuple[str, ...] = _CONSOLE_NEVER
    if event_dict.get("event") not in _CONSOLE_NEWS:
        hidden += _CONSOLE_NEWS_ONLY
    for key in [k for k, v in event_dict.items() if v is None or k in hidden]:
        del event_dict[key]
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
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
        _schema_filler(context),
    ]
    renderer: structlog.typing.Processor
    if log_format == "json":
        # Strict JSON (no NaN or Infinity), and a value that cannot be encoded never loses the line.
        renderer = structlog.processors.JSONRenderer(serializer=log_serializer, sort_keys=False)
        shared.append(structlog.processors.dict_tracebacks)
    else:
        # A plain traceback: a rich one shows local variables, and a password may be one.
        console = structlog.dev.ConsoleRenderer(
            colors=out.isatty(),
            pad_event_to=18,
            sort_keys=False,
            exception_formatter=structlog.dev.plain_traceback,
        )
        renderer = _chain(_compact_for_console, console)
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


Processor = structlog.typing.Processor
Rewriter = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]


def _chain(first: Rewriter, render: Processor) -> Processor:
    """``render`` after ``first``: one renderer for structlog's lines and the stdlib's alike."""

    def both(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        return render(logger, method, first(logger, method, event_dict))

    return both


def level_of(t: Transition) -> str:
    """The level of a transition's line: what an operator woken at night should look at.

    ``error`` for the loop's own failures; ``warning`` for leadership lost other than on
    request, for a session or node lost, and for a leader riding out a disconnection;
    ``info`` for the rest.
    """
    if t.event in (Event.INTERNAL_ERROR, Event.FAILED):
        return "error"
    if t.event is Event.REVOKED:
        return "info" if t.reason in REQUESTED_REVOCATIONS else "warning"
    if t.event is Event.SESSION_LOST:
        return "info" if t.reason is Reason.SESSION_CLOSED else "warning"
    if t.event in (Event.NODE_LOST, Event.DISCONNECTED):
        return "warning"
    return "info"


def get_logger(**initial: Any) -> Any:
    """A structlog logger bound to ``initial`` values."""
    return structlog.get_logger(**initial)
