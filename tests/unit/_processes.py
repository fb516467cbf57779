"""Helpers for tests of real processes: is a pid dead, and a deadline wait from async tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from election_daemon.testing import process_alive

SOON_S = 15.0
"""How long a process event may take on a loaded machine before a test fails."""


def dead(pid: int) -> bool:
    """Gone, or a zombie: this machine's PID 1 may never reap orphans."""
    return not process_alive(pid)


async def until(condition: Callable[[], bool], what: str, timeout_s: float = SOON_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)
