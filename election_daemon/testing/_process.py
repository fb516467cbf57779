"""Child processes that never outlive the Python process that started them.

Every child runs in a session (and process group) of its own, so that a terminal's Ctrl-C
reaches only its parent and one signal reaches all it started, and on Linux the kernel sends it
SIGKILL if its parent dies first (:func:`~election_daemon._processes.parent_death_prefix`),
which also covers a parent that is itself killed with SIGKILL. The kernel delivers that signal
when the *thread* that forked the child ends: :func:`start_process` forks from the calling
thread (an event loop's, which lives as long as the program), and :func:`spawn` from one
long-lived daemon thread rather than from whichever thread (say an ``asyncio.to_thread``
worker) asked; an exit hook also kills every child :func:`spawn` started that is still alive.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO

from election_daemon._processes import parent_death_prefix

__all__ = ["forget", "signal_group", "spawn", "start_process"]

_LINE_LIMIT_BYTES = 1 << 20
"""How long a line of a child's piped output may be (asyncio's default is 64 KiB)."""


async def start_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[bytes] | None = asyncio.subprocess.PIPE,
    stderr: int | IO[bytes] | None = asyncio.subprocess.PIPE,
    limit: int = _LINE_LIMIT_BYTES,
) -> asyncio.subprocess.Process:
    """Start ``argv`` in a session of its own, SIGKILLed by the kernel if this process dies first.

    stdin is ``/dev/null``; ``stdout`` and ``stderr`` are pipes unless given. The prefix execs
    the command, so the pid (and process group) is the command's. Call it from the event loop's
    thread (see the module's docstring).
    """
    return await asyncio.create_subprocess_exec(
        *parent_death_prefix(),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=None if env is None else dict(env),
        start_new_session=True,
        limit=limit,
    )


def signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send ``signum`` to process group ``pgid``; False if the group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
        return True
    return False


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
                [*parent_death_prefix(), *argv],
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
