"""Helpers for tests of real processes: is a pid dead, and a deadline wait from async tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SOON_S = 15.0
"""How long a process event may take on a loaded machine before a test fails."""


def dead(pid: int) -> bool:
    """Gone, or a zombie: this machine's PID 1 may never reap orphans."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped while being read
        return True
    return stat[stat.rindex(b")") + 2 :].split()[0] == b"Z"


async def until(condition: Callable[[], bool], what: str, timeout_s: float = SOON_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)
