"""Where the leader-only command's output goes (``--child-output``), and its lines as log events.

In JSON mode the daemon's stdout is a JSON-lines stream that ``journalctl -o cat | jq`` and log
shippers parse. A command writing there breaks every reader at its first line, and a line it
prints shaped like ``{"event": "elected", "id": "someone-else"}`` would pass for the daemon's
own. So the command's output goes to the daemon's stdout only when asked (``inherit``), to its
stderr (``stderr``), or into the log as ``child_output`` events (``log``): one per line, with the
stream it came from, at most :data:`MAX_LINE_BYTES` long and always valid UTF-8.

In ``log`` mode nothing blocks the event loop (which keeps the lease and the election going):
the pipes are non-blocking, at most :data:`LINES_PER_TURN` lines are logged per turn of the loop,
and while lines wait their turn the pipes are not read, so a command that writes faster than the
log takes it blocks on its full pipe, not the daemon on its memory. The supervisor's own lines
about the command go through the same queue (:class:`OrderedLog`), so that the command's last
lines come before its ``child_exited``. Order is kept within each stream; stdout and stderr are
two pipes, so their lines interleave as they are read.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from election_daemon.daemon.eventlog import EventLog
from election_daemon.library.events import Event

__all__ = [
    "CUT_MARKER",
    "LINES_PER_TURN",
    "MAX_LINE_BYTES",
    "ChildOutput",
    "Line",
    "LineSplitter",
    "OrderedLog",
    "OutputPipe",
]

MAX_LINE_BYTES = 8192
"""Longest line logged, in bytes of the command's output; a longer one is cut (see :data:`CUT_MARKER`)."""

CUT_MARKER = "…[cut]"
"""Ends the text of a line cut at :data:`MAX_LINE_BYTES` (the event also says ``truncated: true``)."""

LINES_PER_TURN = 64
"""Lines logged per turn of the event loop; the rest wait for the next turn."""

_READ_BYTES = 65536
# When the command exits, what its pipes hold is read at once (its last lines belong before
# child_exited), up to this much: a grandchild still writing must not keep the daemon reading.
_DRAIN_BYTES = 1 << 20


class ChildOutput(enum.StrEnum):
    """Where the leader-only command's stdout and stderr go."""

    INHERIT = "inherit"
    """The daemon's own stdout and stderr (a JSON log on stdout is then mixed with the output)."""

    STDERR = "stderr"
    """Both to the daemon's stderr: its stdout stays the log's alone."""

    LOG = "log"
    """Each line a ``child_output`` log event, with ``stream`` (``stdout`` or ``stderr``)."""


@dataclass(frozen=True, slots=True)
class Line:
    """One line of output, ready to log."""

    text: str
    """The line without its end (``\\n`` or ``\\r\\n``); bytes that are not UTF-8 as ``\\xNN``."""

    truncated: bool
    """True if the line was longer than the limit: ``text`` ends with :data:`CUT_MARKER` and the
    rest of the line was dropped."""


class LineSplitter:
    """Bytes in, bounded lines out: a pure state machine, one per stream."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._skipping = False
        """Inside a line already cut: drop bytes up to its end."""

    def feed(self, data: bytes) -> list[Line]:
        """The lines ``data`` completes; a line over the limit is given (cut) at once, without
        waiting for its end."""
        self._buffer += data
        lines: list[Line] = []
        while True:
            end = self._buffer.find(b"\n")
            if self._skipping:
                if end < 0:
                    self._buffer.clear()
                    return lines
                del self._buffer[: end + 1]
                self._skipping = False
            elif 0 <= end <= self._max:
                lines.append(Line(_text(self._buffer[:end]), truncated=False))
                del self._buffer[: end + 1]
            elif len(self._buffer) > self._max:
                cut = _char_boundary(self._buffer, self._max)
                lines.append(Line(_text(self._buffer[:cut]) + CUT_MARKER, truncated=True))
                self._skipping = True
            else:
                return lines

    def finish(self) -> list[Line]:
        """At end of file: the last line, if it had no line end."""
        rest = b"" if self._skipping else bytes(self._buffer)
        self._buffer.clear()
        self._skipping = False
        return [Line(_text(rest), truncated=False)] if rest else []


def _text(raw: bytes | bytearray) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    # backslashreplace, not replace: binary output stays readable and the line valid JSON.
    return bytes(raw).decode("utf-8", "backslashreplace")


def _char_boundary(buffer: bytearray, cut: int) -> int:
    """``cut``, moved back to the start of the UTF-8 character it would split (if any)."""
    for back in range(4):
        if cut - back <= 0:
            break
        if buffer[cut - back] & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            return cut - back
    return cut


class OrderedLog:
    """An :class:`EventLog` whose events keep their order with the output lines waiting to be logged.

    With nothing waiting, an event is logged at once; otherwise it waits behind the lines. Lines
    are logged :data:`LINES_PER_TURN` at a time, one batch per turn of the event loop.
    """

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._queue: deque[tuple[str, str, dict[str, Any]]] = deque()
        self._budget = LINES_PER_TURN
        self._scheduled = False
        self._on_empty: list[Callable[[], None]] = []

    @property
    def backlog(self) -> int:
        """Entries waiting to be logged."""
        return len(self._queue)

    def debug(self, event: str, **fields: object) -> None:
        self._put("debug", event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._put("info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._put("warning", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._put("error", event, fields)

    def when_empty(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once nothing waits any more (at once if nothing does)."""
        if self._queue:
            self._on_empty.append(callback)
        else:
            callback()

    async def flushed(self) -> None:
        """Until everything put so far has been logged."""
        if self._queue:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def mark() -> None:
                if not done.done():
                    done.set_result(None)

            self._on_empty.append(mark)
            await done

    def _put(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if not self._queue and self._budget > 0:
            self._budget -= 1
            getattr(self._log, level)(event, **fields)
        else:
            self._queue.append((level, event, fields))
        self._schedule()

    def _schedule(self) -> None:
        """Give this turn's budget back on the next turn, and log what waits then."""
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop, no turns: nothing to share it with
            self._budget = LINES_PER_TURN
            return
        self._scheduled = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        self._budget = LINES_PER_TURN
        while self._queue and self._budget > 0:
            self._budget -= 1
            level, event, fields = self._queue.popleft()
            getattr(self._log, level)(event, **fields)
        if self._queue:
            self._schedule()
            return
        callbacks, self._on_empty = self._on_empty, []
        for callback in callbacks:
            callback()


class OutputPipe:
    """The read end of one of the command's output pipes, logged as ``child_output`` lines.

    Takes ownership of ``fd``: :meth:`close` closes it. Call from the event loop's thread.
    """

    def __init__(self, fd: int, stream: str, log: OrderedLog, fields: Mapping[str, object]) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._stream = stream
        self._log = log
        self._fields = dict(fields)
        self._splitter = LineSplitter()
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._closed = False
        self._resume()

    def drain(self) -> None:
        """Read and log what the pipe holds now (bounded), without waiting for more."""
        if self._read_available():
            self.close()

    def close(self) -> None:
        """Log what is left (the last line even without its end), stop reading, close the pipe."""
        if self._closed:
            return
        self._read_available()
        self._closed = True
        self._pause()
        self._put(self._splitter.finish())
        os.close(self._fd)

    def _read_available(self) -> bool:
        """Log what the pipe holds now, up to a bound; True at its end."""
        taken = 0
        while not self._closed and taken < _DRAIN_BYTES:
            data = self._read()
            if data is None:
                return False
            if not data:
                return True
            taken += len(data)
            self._put(self._splitter.feed(data))
        return False

    def _read(self) -> bytes | None:
        """Bytes, ``b""`` at end of file (or a read error), ``None`` if none are there yet."""
        try:
            return os.read(self._fd, _READ_BYTES)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _readable(self) -> None:
        data = self._read()
        if data is None:
            return
        if not data:
            self.close()
            return
        self._put(self._splitter.feed(data))
        if self._log.backlog:
            # Lines wait their turn: read no more until they are logged (the pipe fills, the
            # command waits), then go on.
            self._pause()
            self._log.when_empty(self._resume)

    def _put(self, lines: list[Line]) -> None:
        for line in lines:
            self._log.info(
                Event.CHILD_OUTPUT,
                stream=self._stream,
                line=line.text,
                truncated=line.truncated,
                **self._fields,
            )

    def _resume(self) -> None:
        if not self._closed and not self._reading:
            self._loop.add_reader(self._fd, self._readable)
            self._reading = True

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
