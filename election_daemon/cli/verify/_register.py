"""The fenced register: a process of its own that decides every write of a verify run, on a Unix socket.

It is the run's single source of truth about writes: an :class:`~election_daemon.fencing.SQLiteFence`
decides each request, in arrival order, and records it with its receive time
(``time.monotonic()``) and verdict, durably. The nemesis never faults it.

Protocol: one JSON object per line each way. A request is
``{"token": int, "writer": str, "op": str, "payload": str}``; the answer is
``{"ok": true}`` or ``{"ok": false, "reason": "stale_token" | "token_taken" | "bad_request"}``.

Run as ``python -m election_daemon.cli.verify._register --db FILE --socket PATH``; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from election_daemon.cli.verify._history import Record
from election_daemon.errors import ConfigError
from election_daemon.fencing import SQLiteFence, StaleTokenError

__all__ = ["history_records", "main", "serve"]

_LINE_LIMIT_BYTES = 65536


async def serve(db: Path, socket_path: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    fence = SQLiteFence(db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            while line := await reader.readline():
                writer.write(json.dumps(_decide(fence, line)).encode() + b"\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(socket_path), limit=_LINE_LIMIT_BYTES)
    try:
        await stop.wait()
    finally:
        server.close()
        fence.close()


def _decide(fence: SQLiteFence, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        token, writer, op = request["token"], request["writer"], request["op"]
        payload = str(request.get("payload", ""))
        if not (isinstance(token, int) and isinstance(writer, str) and isinstance(op, str)):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "reason": "bad_request"}
    try:
        fence.write(token, writer, op, payload)
    except StaleTokenError as e:
        return {"ok": False, "reason": e.reason}
    except ConfigError:
        return {"ok": False, "reason": "bad_request"}
    return {"ok": True}


def history_records(db: Path, *, now: float) -> list[Record]:
    """The register's records for the history: every request, then its final state (at ``now``).

    Read from the database after the register has exited: what it acknowledged must be there.
    """
    with SQLiteFence(db) as fence:
        requests = fence.requests()
        writes = fence.writes()
        highest = fence.high_water_mark()
    records: list[Record] = [
        {
            "t": round(request.received_monotonic_s, 6),
            "source": "register",
            "event": "request",
            "seq": request.seq,
            "op": request.op_id,
            "writer": request.writer_id,
            "token": request.token,
            "verdict": "accepted" if request.accepted else "rejected",
            "reason": request.reason,
        }
        for request in requests
    ]
    records.append(
        {
            "t": round(now, 6),
            "source": "register",
            "event": "final",
            "accepted": [write.op_id for write in writes],
            "last": writes[-1].op_id if writes else None,
            "high_water": list(highest) if highest is not None else None,
        }
    )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(prog="election_daemon.cli.verify._register")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.db, args.socket))


if __name__ == "__main__":
    main()
