"""A stand-in daemon for test_supervisor.py: supervises one child, then waits to be killed.

Usage: ``python _supervised_daemon.py MODE STATE_DIR`` with MODE one of

- ``lifeline``: spawn a lifeline first, as the daemon does, and register the child with it;
- ``leaked-pipe``: likewise, but first fork (without exec) a process that outlives the daemon;
  it would hold the lifeline's write end, so that the guardian never saw end-of-file, had the
  lifeline not closed that end in the fork;
- ``bare``: no lifeline (library-like use: nothing kills the child if the daemon dies);
- ``guardian-gone``: spawn a lifeline, SIGKILL its guardian, then try to start the child.

The child ignores SIGTERM and forks a grandchild, in its process group, that ignores it too and
writes its pid to STATE_DIR/grandchild. The daemon prints one JSON line once the child is
started (``daemon``, ``guardian``, ``child``, and the ``holder`` of ``leaked-pipe``), or for
``guardian-gone`` the error and whether a child is running, then exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import structlog

from election_daemon.daemon.lifeline import Lifeline
from election_daemon.daemon.supervisor import ChildSupervisor
from election_daemon.errors import ChildError

CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    path = os.path.join(sys.argv[1], "grandchild")
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
while True:
    time.sleep(60)
"""


async def supervise(mode: str, state_dir: str, lifeline: Lifeline | None, holder: int | None) -> None:
    supervisor = ChildSupervisor(
        [sys.executable, "-c", CHILD, state_dir],
        kill_grace_s=1.0,
        log=structlog.get_logger(),
        lifeline=lifeline,
    )
    guardian = lifeline.guardian_pid if lifeline is not None else None
    if mode == "guardian-gone":
        try:
            await supervisor.start({})
        except ChildError as exc:
            print(json.dumps({"error": str(exc), "running": supervisor.running}), flush=True)
            return
        raise AssertionError("start() succeeded without a guardian")
    child = await supervisor.start({})
    report = {"daemon": os.getpid(), "guardian": guardian, "child": child, "holder": holder}
    print(json.dumps(report), flush=True)
    await asyncio.Event().wait()


def main() -> None:
    mode, state_dir = sys.argv[1:]
    # Log lines go to stderr so that stdout carries only the report.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    lifeline = Lifeline.spawn() if mode != "bare" else None
    holder = os.fork() if mode == "leaked-pipe" else None
    if holder == 0:
        time.sleep(600)
        os._exit(0)
    if mode == "guardian-gone":
        assert lifeline is not None
        os.kill(lifeline.guardian_pid, signal.SIGKILL)
        os.waitpid(lifeline.guardian_pid, 0)
    asyncio.run(supervise(mode, state_dir, lifeline, holder))


if __name__ == "__main__":
    main()
