"""Limits for the HTTP servers we run (the daemon's ``--http``, the ``dashboard``).

- A header-read timeout: a connection that has not sent a complete request within
  ``header_timeout_s`` of connecting (or of its previous response) is closed. aiohttp's
  keep-alive timer does exactly that: it runs from the start of a connection and after each
  response, and closes the connection if the handler is still waiting for a request then, be
  it idle or halfway through its headers. Handlers that are running (an event stream) are
  never cut.
- A cap on concurrent connections: one more is answered ``503`` and closed at once, before
  anything is read from it.
- Handlers are cancelled when their client goes away, so that a departed event stream or
  status lookup frees its place at once rather than at its next write.
- :func:`bind_error`: the one line a failed bind becomes.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["HEADER_TIMEOUT_S", "MAX_CONNECTIONS", "GuardedRunner", "bind_error"]

HEADER_TIMEOUT_S = 5.0
"""How long a connection may take to send a complete request (and may then stay idle)."""

MAX_CONNECTIONS = 64
"""Connections served at once; health checks and a few browsers need far fewer."""

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 21\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 1\r\n"
    b"\r\n"
    b"too many connections\n"
)


class _GuardedServer(web.Server):
    """aiohttp's low-level server, refusing connections beyond ``max_connections``."""

    max_connections: int = MAX_CONNECTIONS
    refused: int = 0

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        # Called once per connection, in order, before its handler reads anything. A closed
        # connection counts until its handler's task has finished: conservative.
        if len(self.connections) >= self.max_connections:
            self.refused += 1
            transport.write(_REFUSAL)
            transport.close()
            return
        super().connection_made(handler, transport)


class GuardedRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` with a header-read timeout and a connection cap."""

    def __init__(
        self,
        app: web.Application,
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        if max_connections < 1 or not header_timeout_s > 0:
            raise ValueError("max_connections and header_timeout_s must be positive")
        kwargs.setdefault("handler_cancellation", True)
        super().__init__(app, keepalive_timeout=header_timeout_s, **kwargs)
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The application's own server, with connection_made guarded (same layout, no state).
        server.__class__ = _GuardedServer
        assert isinstance(server, _GuardedServer)
        server.max_connections = self._max_connections
        return server

    @property
    def refused(self) -> int:
        """Connections refused so far for being one too many."""
        server = self.server
        return server.refused if isinstance(server, _GuardedServer) else 0


def bind_error(error: OSError) -> str:
    """Why a bind failed, as a few lowercase words (``address already in use``)."""
    if isinstance(error, socket.gaierror) or not error.errno:
        return str(error.strerror or error).lower()
    # asyncio wraps the bind error in a long message; the errno says it best.
    return os.strerror(error.errno).lower()
