"""The callback contract, without ZooKeeper: plain or coroutine callbacks, failures contained."""

from __future__ import annotations

import asyncio
import logging

import pytest

from election_daemon.library._callbacks import Callbacks

log = logging.getLogger("test_callbacks")


async def test_plain_callbacks_run_at_once_and_coroutines_as_tasks() -> None:
    seen: list[str] = []
    gate = asyncio.Event()

    def plain(arg: str) -> None:
        seen.append(f"plain {arg}")

    async def slow(arg: str) -> None:
        await gate.wait()
        seen.append(f"slow {arg}")

    callbacks = Callbacks(log)
    callbacks.run([plain, slow], "x", revoking=True)
    assert seen == ["plain x"]  # the slow one does not delay the caller
    waited = asyncio.ensure_future(callbacks.revoked_done())
    await asyncio.sleep(0)
    assert not waited.done()
    gate.set()
    await asyncio.wait_for(waited, 1)
    assert seen == ["plain x", "slow x"]


async def test_a_failing_callback_is_logged_and_the_others_run(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    def bad(_: int) -> None:
        raise RuntimeError("bad callback")

    async def bad_later(_: int) -> None:
        raise RuntimeError("bad coroutine")

    callbacks = Callbacks(log)
    with caplog.at_level(logging.ERROR, logger="test_callbacks"):
        callbacks.run([bad, bad_later, seen.append], 1, revoking=True)
        await callbacks.revoked_done()
        await asyncio.sleep(0)
    assert seen == [1]
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed" in m for m in messages)
    assert sum("callback" in m for m in messages) == 2


async def test_a_failing_listener_is_logged_and_the_others_hear(caplog: pytest.LogCaptureFixture) -> None:
    heard: list[str] = []

    def bad(_: str) -> None:
        raise RuntimeError("bad listener")

    with caplog.at_level(logging.ERROR, logger="test_callbacks"):
        Callbacks(log).notify([bad, heard.append], "edge")
    assert heard == ["edge"]
    assert any("listener failed" in r.getMessage() for r in caplog.records)


async def test_background_work_is_kept_until_done() -> None:
    done = asyncio.Event()

    async def work() -> None:
        done.set()

    callbacks = Callbacks(log)
    callbacks.spawn(work())
    await asyncio.wait_for(done.wait(), 1)
    await asyncio.sleep(0)
    assert not callbacks._tasks
