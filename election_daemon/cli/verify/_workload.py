"""The leader-only command of a verify run: it writes to the fenced register with its term's token, forever.

Each write is a JSON line to the register (:mod:`election_daemon.cli.verify._register`) carrying
``ELECTION_TOKEN``, the writer ``ELECTION_ID`` and an op id ``<pid>-<n>``. After each answer it
prints one JSON line, which reaches the run through the daemon's stdout::

    {"source": "workload", "event": "write", "op": ..., "writer": ..., "token": ...,
     "pid": ..., "invoke_s": ..., "monotonic_s": ..., "result": "ok" | "rejected" | "error", "reason": ...}

A refused write does not stop it: a deposed leader that goes on writing is what the run checks.

Standard library only, and run by file path (``python _workload.py --socket PATH``), so that
it starts writing within milliseconds of its start, without importing the package.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import BinaryIO

_ANSWER_TIMEOUT_S = 5.0


def _emit(record: dict[str, object]) -> None:
    # One write(2) per line, under PIPE_BUF: it never interleaves with the daemon's own lines.
    os.write(sys.stdout.fileno(), (json.dumps(record) + "\n").encode())


def _connect(path: str) -> tuple[socket.socket, BinaryIO]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_ANSWER_TIMEOUT_S)
    sock.connect(path)
    return sock, sock.makefile("rb")


def main() -> None:
    parser = argparse.ArgumentParser(prog="_workload.py")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    token = int(os.environ["ELECTION_TOKEN"])
    writer = os.environ["ELECTION_ID"]
    pid = os.getpid()
    connection: tuple[socket.socket, BinaryIO] | None = None
    for n in range(1, sys.maxsize):
        op = f"{pid}-{n}"
        invoked = time.monotonic()
        reason = None
        try:
            if connection is None:
                connection = _connect(args.socket)
            sock, stream = connection
            sock.sendall(
                json.dumps({"token": token, "writer": writer, "op": op, "payload": op}).encode() + b"\n"
            )
            answer = json.loads(stream.readline() or b"null")
            if not isinstance(answer, dict):
                raise ConnectionError("the register closed the connection")
            result = "ok" if answer.get("ok") else "rejected"
            reason = answer.get("reason")
        except (OSError, ValueError) as e:
            # The outcome is unknown: the register's record decides it.
            result, reason = "error", f"{type(e).__name__}: {e}"
            if connection is not None:
                connection[0].close()
            connection = None
        _emit(
            {
                "source": "workload",
                "event": "write",
                "op": op,
                "writer": writer,
                "token": token,
                "pid": pid,
                "invoke_s": round(invoked, 6),
                "monotonic_s": round(time.monotonic(), 6),
                "result": result,
                "reason": reason,
            }
        )
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
