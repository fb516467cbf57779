"""Child processes that never outlive the Python process that started them.

Two guards: an exit hook kills every child still alive, and on Linux the kernel sends the
child SIGKILL if its parent dies first (``setpriv --pdeathsig``), which also covers a test run
that is itself killed with SIGKILL. The kernel delivers that signal when the *thread* that
forked the child ends, so children are forked from one long-lived daemon thread rather than
from whichever thread (say an ``asyncio.to_thread`` worker) asked for them.
"""

from __future__ import annotations

import atexit
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

__all__ = ["forget", "spawn"]

_PDEATHSIG_PREFIX: tuple[str, ...] = (
    ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") is not None else ()
)

_children: set[subprocess.Popen[bytes]] = set()
_children_lock = threading.Lock()

_Request = tuple[Callable[[], subprocess.Popen[bytes]], "Future[subprocess.Popen[bytes]]"]
_requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def spawn(argv: Sequence[str], *, cwd: Path, output_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``cwd`` with stdout and stderr appended to ``output_path``."""

    def start() -> subprocess.Popen[bytes]:
        with output_path.open("ab") as output:
            return subprocess.Popen(
                [*_PDEATHSIG_PREFIX, *argv],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for pytest must not kill servers under a test
                # that is still tearing down.
                start_new_session=True,
            )

    future: Future[subprocess.Popen[bytes]] = Future()
    _requests.put((start, future))
    _ensure_spawner()
    process = future.result()
    with _children_lock:
        _children.add(process)
    return process


def forget(process: subprocess.Popen[bytes]) -> None:
    """Stop tracking a child that has been waited for."""
    with _children_lock:
        _children.discard(process)


def _ensure_spawner() -> None:
    global _spawner  # noqa: PLW0603 - one spawner thread per process, started on first use
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_serve_requests, name="zk-spawner", daemon=True)
            _spawner.start()


def _serve_requests() -> None:
    while True:
        start, future = _requests.get()
        try:
            future.set_result(start())
        except Exception as error:
            future.set_exception(error)


@atexit.register
def _kill_children() -> None:
    with _children_lock:
        children = list(_children)
        _children.clear()
    for process in children:
        process.kill()
        process.wait()
