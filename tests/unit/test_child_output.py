"""The command's output as log lines: the pure line splitter, and the supervisor in ``log`` mode
with real processes (order, bounds, binary output, the event loop kept free)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from _processes import SOON_S
from structlog.testing import LogCapture

from election_daemon.daemon.childoutput import CUT_MARKER, MAX_LINE_BYTES, ChildOutput, Line, LineSplitter
from election_daemon.daemon.supervisor import ChildSupervisor

pytestmark = pytest.mark.timeout(60)


def test_lines_are_split_across_reads_without_their_ends() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\r\ntw") == [Line("one", False)]
    assert splitter.feed(b"o\n\nthree") == [Line("two", False), Line("", False)]
    assert splitter.finish() == [Line("three", False)]
    assert splitter.finish() == []


def test_a_long_line_is_cut_at_once_with_a_marker_and_its_rest_dropped() -> None:
    splitter = LineSplitter(max_line_bytes=10)
    assert splitter.feed(b"0123456789abc") == [Line("0123456789" + CUT_MARKER, True)]
    assert splitter.feed(b"def") == []  # still the cut line
    assert splitter.feed(b"ghi\nnext\n") == [Line("next", False)]
    assert splitter.feed(b"0123456789\n") == [Line("0123456789", False)]  # exactly the limit
    assert splitter.finish() == []


def test_a_cut_never_splits_a_character() -> None:
    splitter = LineSplitter(max_line_bytes=5)
    # "ab€" is 5 bytes; "ab€€" cut at 5 keeps "ab€", "abc€" cut at 5 keeps "abc".
    assert splitter.feed("abc€€\n".encode()) == [Line("abc" + CUT_MARKER, True)]
    assert splitter.feed("ab€€\n".encode()) == [Line("ab€" + CUT_MARKER, True)]


def test_bytes_that_are_not_utf8_are_escaped() -> None:
    splitter = LineSplitter()
    [line] = splitter.feed(b"ok \xff\xfe \x00 \xe2\x82\n")
    assert line.text == "ok \\xff\\xfe \x00 \\xe2\\x82"
    line.text.encode("utf-8")  # always encodable: the log line stays valid JSON


def output(capture: LogCapture) -> list[MutableMapping[str, Any]]:
    return [e for e in capture.entries if e["event"] == "child_output"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def run_to_exit(supervisor: ChildSupervisor, **start: Any) -> None:
    await supervisor.start({}, **start)
    await asyncio.wait_for(supervisor.wait(), SOON_S)
    await asyncio.wait_for(supervisor.stop("done"), SOON_S)


async def test_log_mode_logs_each_line_with_its_stream_before_the_exit(log: Any, capture: LogCapture) -> None:
    code = (
        "import sys\n"
        "print('hello', flush=True)\n"
        "sys.stderr.write('warning: careful\\n'); sys.stderr.flush()\n"
        "sys.stdout.buffer.write(b'x' * 20000 + b'\\n' + b'bin \\xff\\n' + b'no newline')\n"
        "sys.exit(3)\n"
    )
    supervisor = ChildSupervisor(python(code), kill_grace_s=1.0, log=log, output=ChildOutput.LOG)
    await run_to_exit(supervisor, log_fields={"token": 42})
    lines = output(capture)
    by_stream = {
        stream: [e["line"] for e in lines if e["stream"] == stream] for stream in ("stdout", "stderr")
    }
    assert by_stream["stderr"] == ["warning: careful"]
    assert by_stream["stdout"][0] == "hello"
    assert by_stream["stdout"][1] == "x" * MAX_LINE_BYTES + CUT_MARKER
    assert by_stream["stdout"][2:] == ["bin \\xff", "no newline"]
    assert [e["truncated"] for e in lines if e["stream"] == "stdout"] == [False, True, False, False]
    assert {e["token"] for e in lines} == {42}
    assert {e["pid"] for e in lines} == {supervisor.pid}
    names = [e["event"] for e in capture.entries]
    # Every line the command wrote before it exited is logged before its exit.
    assert names.index("child_exited") > max(i for i, name in enumerate(names) if name == "child_output")
    assert names[0] == "child_started"


async def test_log_mode_keeps_order_and_the_event_loop_free_under_a_flood(
    log: Any, capture: LogCapture
) -> None:
    count = 50_000
    code = f"import sys\nfor i in range({count}): sys.stdout.write(f'{{i}}\\n')\n"
    supervisor = ChildSupervisor(python(code), kill_grace_s=1.0, log=log, output=ChildOutput.LOG)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await run_to_exit(supervisor)
    stop.set()
    await ticking
    assert [e["line"] for e in output(capture)] == [str(i) for i in range(count)]
    # Lines are logged a few dozen per turn of the loop: other work runs between the batches.
    assert max(gaps) < 0.5, f"the event loop was held for {max(gaps):.3f} s"
    assert len(gaps) > 10


async def test_a_grandchild_s_output_is_logged_until_the_group_is_stopped(
    log: Any, capture: LogCapture, groups: list[int]
) -> None:
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    print('grandchild', flush=True); time.sleep(600)\n"
        "time.sleep(600)\n"
    )
    supervisor = ChildSupervisor(python(code), kill_grace_s=1.0, log=log, output=ChildOutput.LOG)
    groups.append(await supervisor.start({}))
    deadline = time.monotonic() + SOON_S
    while not output(capture):
        assert time.monotonic() < deadline, "no output from the grandchild"
        await asyncio.sleep(0.01)
    await asyncio.wait_for(supervisor.stop("revoked"), SOON_S)
    assert [e["line"] for e in output(capture)] == ["grandchild"]
    assert capture.entries[-1]["event"] == "child_stopped"
