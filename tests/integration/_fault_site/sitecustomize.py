"""Test-only: arms a fault in a daemon's election loop (on PYTHONPATH, Python imports it at start).

``ELECTION_TEST_FAULT=STEP:ARM_FILE``: while ARM_FILE exists, STEP raises (``position``: the
queue read every join and takeover does; ``parse_contenders``: the leader's re-read of the
queue). Nothing of this is in the package: the daemon runs unchanged around it.

``ELECTION_TEST_BLOCK_S=SECONDS``: SIGUSR2 blocks the daemon's event loop that long. Python runs
signal handlers in the main thread, between two bytecodes of what it runs there, the event loop:
a handler that sleeps holds the loop as a stuck callback would.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any


class InjectedFault(Exception):
    """The fault."""


def _armed(original: Callable[..., Any], arm_file: str, step: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.path.exists(arm_file):
            raise InjectedFault(f"injected in {step}")
        return original(*args, **kwargs)

    return wrapper


def _install(spec: str) -> None:
    from election_daemon.library import candidacy, election

    step, _, arm_file = spec.partition(":")
    if step == "position":
        owner: object = candidacy.Candidacy
    elif step == "parse_contenders":
        owner = election
    else:
        raise SystemExit(f"sitecustomize: unknown fault step {step!r}")
    setattr(owner, step, _armed(getattr(owner, step), arm_file, step))


def _block_on_sigusr2(seconds: float) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        time.sleep(seconds)

    signal.signal(signal.SIGUSR2, handler)


if os.environ.get("ELECTION_TEST_FAULT"):
    _install(os.environ["ELECTION_TEST_FAULT"])
if os.environ.get("ELECTION_TEST_BLOCK_S"):
    _block_on_sigusr2(float(os.environ["ELECTION_TEST_BLOCK_S"]))
