"""``python -m election_daemon.testing``: a sandbox ZooKeeper that an election runs on, gone at Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from election_daemon import Election
from election_daemon.testing import process_alive, read_lines, start_process

START_TIMEOUT_S = 90.0  # three JVMs on a busy two-core machine


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the servers: their launcher execs the JVM)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def directories_of(pids: list[int]) -> set[Path]:
    """The harness's temporary directories the processes' command lines name."""
    found: set[Path] = set()
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        found.update(Path(m) for m in re.findall(r"(/[^\0=:]*/zookeeper-[^/\0:]+)", cmdline))
    return found


def answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.mark.timeout(180)
@pytest.mark.parametrize("servers", [pytest.param(1), pytest.param(3, marks=pytest.mark.ensemble)])
async def test_the_sandbox_serves_an_election_until_ctrl_c_then_is_gone(servers: int, zk_path: str) -> None:
    sandbox = await start_process(
        [sys.executable, "-m", "election_daemon.testing", "--servers", str(servers)]
    )
    assert sandbox.stdout is not None and sandbox.stderr is not None
    try:
        lines = read_lines(sandbox.stdout)
        hosts = await asyncio.wait_for(anext(lines), START_TIMEOUT_S)
        ready = await asyncio.wait_for(anext(lines), 5)
        assert re.fullmatch(r"127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+)*", hosts), hosts
        assert len(hosts.split(",")) == servers
        assert ready.startswith("ready: ") and "Ctrl-C" in ready, ready

        # The daemon's default session timeout (10 s) is granted, not refused.
        async with Election(hosts, zk_path, identity="sandboxed", session_timeout_s=10) as election:
            term = await election.wait_for_leadership(30)
            assert term.token > 0 and election.negotiated_session_timeout_s == 10
        servers_pids = children_of(sandbox.pid)
        assert len(servers_pids) == servers
        directories = directories_of(servers_pids)
        assert directories and all(d.is_dir() for d in directories)

        sandbox.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(sandbox.wait(), 30)
        stderr = (await sandbox.stderr.read()).decode()
    finally:
        if sandbox.returncode is None:
            sandbox.kill()
            await sandbox.wait()
    assert code == 0 and stderr == "stopped: servers killed, their directory deleted\n", stderr
    assert not any(process_alive(pid) for pid in servers_pids)
    assert not any(answers(address) for address in hosts.split(","))
    assert not any(d.exists() for d in directories)


def test_a_bad_flag_is_one_line_and_exit_code_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "election_daemon.testing", "--servers", "\u0663"],  # an Arabic-Indic 3
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("python -m election_daemon.testing: error: argument --servers: ")
    assert done.stderr.count("\n") == 1
