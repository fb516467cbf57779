"""The README's library example, run as written against a real ZooKeeper server and stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from election_daemon.testing import ZooKeeperEnsemble, read_lines, start_process

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
    zk_factory: Callable[..., ZooKeeperEnsemble], zk_path: str, tmp_path: Path
) -> None:
    # The example asks for T = 10 s, which the shared test server (4 s at most) would refuse.
    server = await asyncio.to_thread(zk_factory, 1, max_session_timeout_ms=20_000)
    zk_hosts = server.hosts
    kazoo = KazooClient(hosts=zk_hosts)
    await asyncio.to_thread(kazoo.start, 10)
    try:
        await _run_example(zk_hosts, zk_path, kazoo, tmp_path)
    finally:
        await asyncio.to_thread(kazoo.stop)
        kazoo.close()


async def _run_example(zk_hosts: str, zk_path: str, kazoo: KazooClient, tmp_path: Path) -> None:
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
        assert len(await _contenders(kazoo, zk_path)) == 1

        process.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(_all(lines), 20)
        stderr = (await asyncio.wait_for(process.stderr.read(), 5)).decode()
        code = await asyncio.wait_for(process.wait(), 5)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # No traceback; aiozk may still warn that it aborted its connection on the way out.
    assert code == 0 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert rest[-1] == "no longer leading: stopped", rest
    # Gone now: the example's session (10 s) would otherwise keep the node for seconds yet.
    assert await _contenders(kazoo, zk_path) == []


async def _contenders(kazoo: KazooClient, path: str) -> list[str]:
    """The path's children but the term record (``_term``, persistent by design)."""
    return [c for c in await asyncio.to_thread(kazoo.get_children, path) if c != "_term"]


async def _all(lines: AsyncIterator[str]) -> list[str]:
    return [line async for line in lines]
