"""A TCP proxy that injects network faults (partition, latency, reset) without root."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from election_daemon.errors import ConfigError

__all__ = ["TcpProxy"]

_T = TypeVar("_T")

_CHUNK_BYTES = 65536
# Bounds what one direction of one connection holds in memory; beyond it TCP flow control
# pushes back on the sender, as a slow network would.
_QUEUE_CHUNKS = 64
_CALL_TIMEOUT_S = 10.0

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _proxy_loop() -> asyncio.AbstractEventLoop:
    """The event loop every proxy runs on, in its own daemon thread, started on first use."""
    global _loop  # noqa: PLW0603 - one proxy thread per process, started on first use
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="tcp-proxy", daemon=True).start()
            _loop = loop
        return _loop


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run_coroutine_threadsafe(coroutine, _proxy_loop()).result(_CALL_TIMEOUT_S)


class _Link:
    """One proxied connection: the accepted client side, the target side once connected, its task."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self._is_reset = False

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client] if self.target is None else [self.client, self.target]

    def reset(self) -> None:
        """Close both sides with RST, and stop forwarding. Idempotent."""
        if self._is_reset:
            return
        self._is_reset = True
        for writer in self.writers():
            _reset(writer)
        if self.task is not None:
            self.task.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection with RST."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.fileno() != -1:
        # Linger with a zero timeout turns close() into an RST instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _reset_if_connected(
    connecting: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
) -> None:
    if not connecting.cancelled() and connecting.exception() is None:
        _reset(connecting.result()[1])


class TcpProxy:
    """Forwards every TCP connection made to :attr:`address` to ``target_host:target_port``.

    Proxies run on one shared event loop in a background thread, so a busy or blocked test
    event loop does not slow them. Methods return once the change is in effect; they take
    microseconds, so async code may call them directly.

    Faults:

    - :meth:`cut` stops forwarding in both directions while every connection stays open: no
      FIN, no RST, just silence, like a network partition. New connections are accepted but
      reach the target only after :meth:`restore`. Bytes sent meanwhile are *held, not
      dropped*: the proxy stops reading, so they wait in socket buffers (TCP flow control then
      stalls the sender) and are delivered on :meth:`restore`, as TCP retransmission delivers
      them once a partition heals. A close or reset by either side while cut is also held.
    - :meth:`set_latency` delays every chunk, both ways, by the given seconds (order is kept).
    - :meth:`reset` closes every current connection at once with RST on both sides.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        if not 0 < target_port < 65536:
            raise ConfigError("target_port", f"must be a TCP port in 1..65535, got {target_port}")
        if not 0 <= listen_port < 65536:
            raise ConfigError("listen_port", f"must be 0 (any free port) or a TCP port, got {listen_port}")
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self._listen_port = listen_port
        self._latency_s = 0.0
        self._open = asyncio.Event()
        self._open.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    def __repr__(self) -> str:
        state = "cut" if self.is_cut else f"latency={self._latency_s}s"
        return f"TcpProxy({self.address} -> {self.target_host}:{self.target_port}, {state})"

    @property
    def port(self) -> int:
        """The port clients connect to (known once started, when constructed with port 0)."""
        if self._server is None:
            raise RuntimeError("TcpProxy.port is known only after start()")
        return self._listen_port

    @property
    def address(self) -> str:
        """``host:port`` that clients connect to."""
        return f"{self.listen_host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """Connections currently open through the proxy (including ones held by a cut)."""
        return len(self._links)

    @property
    def is_cut(self) -> bool:
        return not self._open.is_set()

    @property
    def latency_s(self) -> float:
        return self._latency_s

    def start(self) -> Self:
        """Listen; raises OSError if the listen address is taken."""
        if self._server is None:
            self._server = _run(self._listen())
            self._listen_port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        """Stop listening and reset every open connection. Idempotent."""
        if self._server is not None:
            _run(self._shut_down(self._server))
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def cut(self) -> None:
        """Stop forwarding bytes, both ways, on every connection, silently."""
        _run(self._set_open(is_open=False))

    def restore(self) -> None:
        """Resume forwarding, delivering the bytes held since :meth:`cut`."""
        _run(self._set_open(is_open=True))

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk forwarded from now on by ``seconds`` (0 removes the delay)."""
        if seconds < 0:
            raise ConfigError("seconds", f"latency must be >= 0, got {seconds}")
        self._latency_s = seconds

    def reset(self) -> None:
        """Abruptly close (RST) every connection currently open; later connections work."""
        _run(self._reset_links())

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, self.listen_host, self._listen_port)

    async def _shut_down(self, server: asyncio.Server) -> None:
        server.close()
        await self._reset_links()
        await server.wait_closed()

    async def _set_open(self, *, is_open: bool) -> None:
        if is_open:
            self._open.set()
        else:
            self._open.clear()

    async def _reset_links(self) -> None:
        links = list(self._links)
        for link in links:
            link.reset()
        await asyncio.gather(*(link.task for link in links if link.task is not None), return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        link = _Link(client_writer)
        self._links.add(link)
        # Forwarding runs in a task of its own that reset() cancels: asyncio's stream server
        # reports a connection handler that ends cancelled as an error.
        link.task = asyncio.create_task(self._forward(link, client_reader))
        try:
            await asyncio.wait([link.task])
        finally:
            self._links.discard(link)

    async def _forward(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        try:
            await self._open.wait()
            connecting = asyncio.ensure_future(asyncio.open_connection(self.target_host, self.target_port))
            try:
                target_reader, target_writer = await asyncio.shield(connecting)
            except asyncio.CancelledError:
                # Reset while connecting: the target must see an RST too, not a FIN.
                connecting.add_done_callback(_reset_if_connected)
                raise
            except OSError:
                # Passed on as a reset, the nearest thing to the refusal the client would have seen.
                link.reset()
                return
            link.target = target_writer
            opening = await self._opening(client_reader)
            async with asyncio.TaskGroup() as pipes:
                pipes.create_task(self._pipe(client_reader, target_writer, opening))
                pipes.create_task(self._pipe(target_reader, link.client))
        except* (OSError, EOFError):
            link.reset()
        else:
            for writer in link.writers():
                writer.close()

    async def _opening(self, client_reader: asyncio.StreamReader) -> bytes:
        """Read and rewrite what a client sends first; what it returns is forwarded in its place.

        A hook for protocol-aware subclasses: the plain proxy rewrites nothing.
        """
        return b""

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, opening: bytes = b""
    ) -> None:
        """Forward one direction: ``opening``, the bytes read, then EOF (as a half-close) or a reset."""
        loop = asyncio.get_running_loop()
        # A chunk is None when reading failed: the reset is forwarded in turn, not early.
        chunks: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
        if opening:
            chunks.put_nowait((loop.time() + self._latency_s, opening))

        async def receive() -> None:
            while True:
                await self._open.wait()
                try:
                    chunk: bytes | None = await reader.read(_CHUNK_BYTES)
                except OSError:
                    chunk = None
                await chunks.put((loop.time() + self._latency_s, chunk))
                if not chunk:
                    return

        async with asyncio.TaskGroup() as receiving:
            receiving.create_task(receive())
            while True:
                due, chunk = await chunks.get()
                if (delay_s := due - loop.time()) > 0:
                    await asyncio.sleep(delay_s)
                await self._open.wait()
                if chunk is None:
                    raise ConnectionResetError("peer reset the connection")
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()
