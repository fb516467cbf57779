"""``python -m election_daemon.cli.demo`` end to end: real ZooKeeper servers, real daemons, real faults."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from election_daemon.testing import process_alive

ROOT = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT_S = 2.0
FAILOVER_DEADLINE_S = 5.0 + 3.0 * SESSION_TIMEOUT_S  # the demo's own deadline for this timeout

HEADER = re.compile(r"^election-daemon demo: .* ensemble at (?P<hosts>\S+); ", re.MULTILINE)
FAILOVER = re.compile(
    r"^failover (?P<number>\d+)/(?P<total>\d+): (?P<kind>SIGTERM|SIGKILL) (?P<old>\S+) -> (?P<new>\S+) "
    r"in (?P<duration>\d+\.\d+) s, token (?P<token>\d+)$",
    re.MULTILINE,
)
SUMMARY = re.compile(r"^summary: .*$", re.MULTILINE)

# The demo runs its own three-server ensemble.
pytestmark = pytest.mark.ensemble


def demo_command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "election_daemon.cli.demo",
        "--session-timeout",
        f"{SESSION_TIMEOUT_S:g}",
        *args,
    ]


def demo_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and process_alive(int(entry.name)):
            found.append(f"{entry.name}: {cmdline}")
    return found


def port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def assert_cleaned_up(hosts: str, *, timeout_s: float = 10.0) -> None:
    """No daemon of this run is left, and no ZooKeeper server answers on its ports."""
    deadline = time.monotonic() + timeout_s
    while True:
        daemons = processes_mentioning(f"--hosts {hosts} ")
        servers = [address for address in hosts.split(",") if port_open(address)]
        if not daemons and not servers:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: daemons {daemons}, servers on {servers}")
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_demo_prints_each_failover_with_its_duration_and_increasing_tokens() -> None:
    result = subprocess.run(
        demo_command("--faults", "2", "--seed", "1"),
        cwd=ROOT,
        env=demo_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report

    header = HEADER.search(result.stdout)
    assert header is not None, report
    failovers = [m.groupdict() for m in FAILOVER.finditer(result.stdout)]
    assert [(f["number"], f["total"]) for f in failovers] == [("1", "2"), ("2", "2")], report
    # Two faults: one graceful stop and one kill, in an order the seed picks.
    assert sorted(f["kind"] for f in failovers) == ["SIGKILL", "SIGTERM"], report
    for f in failovers:
        assert f["old"] != f["new"], report
        assert 0 < float(f["duration"]) < FAILOVER_DEADLINE_S, report
    # A killed leader's node stays until ZooKeeper expires its session: no instant handover.
    killed = next(f for f in failovers if f["kind"] == "SIGKILL")
    assert float(killed["duration"]) >= SESSION_TIMEOUT_S / 2, report
    tokens = [int(f["token"]) for f in failovers]
    assert tokens == sorted(set(tokens)), report

    summary = SUMMARY.search(result.stdout)
    assert summary is not None, report
    assert "tokens strictly increasing" in summary.group(), report
    assert "no overlapping terms" in summary.group(), report
    assert_cleaned_up(header["hosts"])


async def _read_until(
    stream: asyncio.StreamReader, pattern: re.Pattern[str], seen: list[str], timeout_s: float
) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no line matching {pattern.pattern!r} within {timeout_s:g} s: {seen}")
        raw = await asyncio.wait_for(stream.readline(), remaining)
        if not raw:
            raise AssertionError(f"output ended before a line matching {pattern.pattern!r}: {seen}")
        line = raw.decode().rstrip("\n")
        seen.append(line)
        match = pattern.match(line)
        if match is not None:
            return match


@pytest.mark.timeout(120)
async def test_demo_stops_every_process_on_ctrl_c() -> None:
    process = await asyncio.create_subprocess_exec(
        *demo_command("--faults", "4"),
        cwd=ROOT,
        env=demo_environment(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    seen: list[str] = []
    try:
        header = await _read_until(process.stdout, HEADER, seen, 60)
        await _read_until(process.stdout, FAILOVER, seen, 60)
        process.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = "".join(f"{line}\n" for line in seen) + stdout.decode()
    report = f"stdout:\n{output}\nstderr:\n{stderr.decode()}"
    assert process.returncode == 130, report
    summary = SUMMARY.search(output)
    assert summary is not None and "interrupted" in summary.group(), report
    await asyncio.to_thread(assert_cleaned_up, header["hosts"])


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_on_a_terminal(argv: list[str], *, timeout_s: float) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr; its exit status and output."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
    process = subprocess.Popen(
        argv, cwd=ROOT, env=demo_environment(), stdin=terminal, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every holder of the terminal has closed it
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, output.decode(errors="replace")


@pytest.mark.timeout(120)
def test_the_last_frame_on_a_terminal_shows_no_leader() -> None:
    code, output = run_on_a_terminal(demo_command("--faults", "1", "--seed", "3"), timeout_s=110)
    text = ANSI.sub("", output).replace("\r", "")
    assert code == 0, text[-3000:]
    # Each redraw prints the whole picture again: the last one starts at the last title.
    final = text.rsplit("participants, in queue order", 1)[1].split("summary:", 1)[0]
    assert "★" not in final and "leader-only command says" not in final, final
    assert final.count("exited 0") == 3, final
    assert "stopping the daemons" not in final, final
