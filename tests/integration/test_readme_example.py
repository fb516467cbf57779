"""The README's library example, run as written against a real ZooKeeper server and stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from election_daemon.testing import read_lines, start_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_HOSTS = "zk1:2181,zk2:2181,zk3:2181"
EXAMPLE_PATH = "/services/billing/leader"


def library_example() -> str:
    """The first Python block of the README's "The library" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## The library\n", 1)[1]
    match = re.search(r"^```python\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert match is not None, "no python block in the README's library section"
    return match[1]


@pytest.mark.timeout(60)
async def test_the_library_example_leaves_at_once_on_ctrl_c(
    zk_hosts: str, zk_path: str, kazoo: KazooClient, tmp_path: Path
) -> None:
    source = library_example()
    assert EXAMPLE_HOSTS in source and EXAMPLE_PATH in source
    script = tmp_path / "example.py"
    script.write_text(source.replace(EXAMPLE_HOSTS, zk_hosts).replace(EXAMPLE_PATH, zk_path))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    process = await start_process([sys.executable, str(script)], env=env)
    assert process.stdout is not None and process.stderr is not None
    try:
        lines = read_lines(process.stdout)
        first = await asyncio.wait_for(anext(lines), 30)
        assert first.startswith("leading with token "), first
        # Past start(): the example now waits on the changes stream, where Ctrl-C comes.
        queue = await asyncio.wait_for(anext(lines), 10)
        assert queue.startswith("Participant("), queue
        assert len(await asyncio.to_thread(kazoo.get_children, zk_path)) == 1

        process.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(_all(lines), 20)
        stderr = (await asyncio.wait_for(process.stderr.read(), 5)).decode()
        code = await asyncio.wait_for(process.wait(), 5)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (code, stderr) == (0, ""), stderr
    assert rest[-1] == "no longer leading: stopped", rest
    # Gone now: the example's session (10 s) would otherwise keep the node for seconds yet.
    assert await asyncio.to_thread(kazoo.get_children, zk_path) == []


async def _all(lines: AsyncIterator[str]) -> list[str]:
    return [line async for line in lines]
