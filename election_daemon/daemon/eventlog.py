"""The logger interface this package's process-control modules take: structlog-style events.

Any structlog bound logger satisfies :class:`EventLog` structurally, whether
``structlog.stdlib.BoundLogger``, ``structlog.typing.FilteringBoundLogger`` or the lazy proxy
from ``structlog.get_logger()``; so does anything else with these four methods.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["EventLog"]


class EventLog(Protocol):
    """Log one event: a snake_case name (``child_started``) and keyword fields (``pid=...``)."""

    def debug(self, event: str, **fields: object) -> object: ...

    def info(self, event: str, **fields: object) -> object: ...

    def warning(self, event: str, **fields: object) -> object: ...

    def error(self, event: str, **fields: object) -> object: ...
