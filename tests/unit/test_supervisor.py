"""ChildSupervisor and Lifeline with real processes: groups, signals, reaping, daemon death."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from _processes import SOON_S, dead, until
from structlog.testing import LogCapture

import election_daemon
from election_daemon._processes import process_stat
from election_daemon.daemon.supervisor import ChildExit, ChildSupervisor
from election_daemon.errors import ChildError, ConfigError

pytestmark = pytest.mark.timeout(60)

DAEMON = Path(__file__).with_name("_supervised_daemon.py")
PACKAGE_ROOT = Path(election_daemon.__file__).resolve().parent.parent

# A Python child that records itself, then sleeps; the test reads the record once it appears.
RECORD = """
import json, os, sys, time
info = {
    "pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
    "stdin": os.readlink("/proc/self/fd/0"), "token": os.environ.get("ELECTION_TOKEN"),
    "home": os.environ.get("HOME"),
}
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(info, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(float(sys.argv[2]))
"""

# Ignores SIGTERM, forks a grandchild (in its group) that ignores it too, and records both pids.
STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = os.fork()
if grandchild == 0:
    while True:
        time.sleep(60)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {grandchild}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
if sys.argv[2] == "exit":
    sys.exit(7)
while True:
    time.sleep(60)
"""

# Exits on SIGTERM (the default action), leaving a grandchild that ignores it.
LEAVES_GRANDCHILD = """
import os, signal, sys, time
grandchild = os.fork()
if grandchild == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        time.sleep(60)
while True:
    time.sleep(60)
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


async def read_when_written(path: Path) -> str:
    await until(path.exists, f"{path.name} to be written")
    return await asyncio.to_thread(path.read_text)


def events(capture: LogCapture, name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in capture.entries if entry["event"] == name]


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "kill_grace_s", "field"),
    [
        ([], 1.0, "command"),
        ([""], 1.0, "command"),
        (["true"], 0.0, "kill_grace_s"),
        (["true"], -1.0, "kill_grace_s"),
        (["true"], float("nan"), "kill_grace_s"),
    ],
)
def test_bad_configuration_names_the_field(
    command: list[str], kill_grace_s: float, field: str, log: Any
) -> None:
    with pytest.raises(ConfigError) as caught:
        ChildSupervisor(command, kill_grace_s=kill_grace_s, log=log)
    assert caught.value.field == field


def test_a_missing_or_unusable_program_is_a_one_line_child_error(tmp_path: Path, log: Any) -> None:
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    cases = {
        "no-such-program-3f9a": "command not found on PATH: no-such-program-3f9a",
        str(tmp_path / "missing"): f"command not found: {tmp_path / 'missing'}",
        str(tmp_path): f"command is a directory: {tmp_path}",
        str(not_executable): f"command is not executable: {not_executable}",
    }
    for program, message in cases.items():
        with pytest.raises(ChildError) as caught:
            ChildSupervisor([program], kill_grace_s=1.0, log=log)
        assert str(caught.value) == message


def test_the_program_is_resolved_on_path_at_construction(log: Any) -> None:
    supervisor = ChildSupervisor(["sh", "-c", "true"], kill_grace_s=1.0, log=log)
    assert os.path.isabs(supervisor.executable)
    assert supervisor.check_command() == supervisor.executable


# -- starting and exiting ------------------------------------------------------------


async def test_child_runs_in_its_own_session_with_the_extra_environment(
    tmp_path: Path, log: Any, capture: LogCapture, groups: list[int]
) -> None:
    record = tmp_path / "record"
    supervisor = ChildSupervisor(python(RECORD, str(record), "0"), kill_grace_s=1.0, log=log)
    pid = await supervisor.start({"ELECTION_TOKEN": "42"})
    groups.append(pid)
    assert supervisor.pid == supervisor.pgid == pid
    info = json.loads(await read_when_written(record))
    assert info["pid"] == info["pgid"] == info["sid"] == pid
    assert info["pgid"] != os.getpgid(0)
    assert info["stdin"] == "/dev/null"
    assert info["token"] == "42"
    assert info["home"] == os.environ.get("HOME")  # the daemon's environment is kept
    result = await asyncio.wait_for(supervisor.wait(), SOON_S)
    assert result == ChildExit(pid=pid, returncode=0, stopped_by_us=False)
    assert not supervisor.running
    [started] = events(capture, "child_started")
    assert started["pid"] == started["pgid"] == pid
    assert started["command"] == sys.executable
    [exited] = events(capture, "child_exited")
    assert exited["exit_code"] == 0
    assert exited["signal"] is None
    assert exited["stopped_by_us"] is False


@pytest.mark.parametrize(
    ("code", "returncode", "exit_status", "signum"),
    [
        ("raise SystemExit(3)", 3, 3, None),
        (
            "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)",
            -signal.SIGUSR1,
            128 + signal.SIGUSR1,
            signal.SIGUSR1,
        ),
    ],
)
async def test_wait_reports_a_childs_own_exit_shell_style(
    code: str, returncode: int, exit_status: int, signum: int | None, log: Any
) -> None:
    supervisor = ChildSupervisor(python(code), kill_grace_s=1.0, log=log)
    pid = await supervisor.start({})
    result = await asyncio.wait_for(supervisor.wait(), SOON_S)
    assert (result.pid, result.returncode, result.exit_status, result.signal) == (
        pid,
        returncode,
        exit_status,
        signum,
    )
    assert not result.stopped_by_us


async def test_stop_and_wait_before_any_start(log: Any) -> None:
    supervisor = ChildSupervisor(["true"], kill_grace_s=1.0, log=log)
    assert await supervisor.stop("nothing to stop") is None
    with pytest.raises(ChildError):
        await supervisor.wait()
    assert supervisor.pid is None
    assert not supervisor.running


# -- stopping ------------------------------------------------------------------------


async def test_stop_terminates_a_cooperative_child_quickly(
    tmp_path: Path, log: Any, capture: LogCapture, groups: list[int]
) -> None:
    record = tmp_path / "record"
    supervisor = ChildSupervisor(python(RECORD, str(record), "600"), kill_grace_s=10.0, log=log)
    pid = await supervisor.start({})
    groups.append(pid)
    await read_when_written(record)  # running Python, not still in exec
    started = time.monotonic()
    result = await supervisor.stop("revoked")
    elapsed = time.monotonic() - started
    assert result == ChildExit(pid=pid, returncode=-signal.SIGTERM, stopped_by_us=True)
    assert result.exit_status == 143
    assert elapsed < 10.0  # well before the grace, whatever the load
    assert dead(pid)
    assert [e["signal"] for e in events(capture, "child_signalled")] == ["SIGTERM"]
    [stopped] = events(capture, "child_stopped")
    assert stopped["escalated"] is False
    assert stopped["reason"] == "revoked"
    print(f"stop of a child that exits on SIGTERM: {elapsed * 1000:.1f} ms")


async def test_stop_kills_a_group_that_ignores_sigterm_after_the_grace(
    tmp_path: Path, log: Any, capture: LogCapture, groups: list[int]
) -> None:
    record = tmp_path / "record"
    grace_s = 0.5
    supervisor = ChildSupervisor(python(STUBBORN, str(record), "stay"), kill_grace_s=grace_s, log=log)
    groups.append(await supervisor.start({}))
    child, grandchild = map(int, (await read_when_written(record)).split())
    started = time.monotonic()
    result = await supervisor.stop("revoked")
    elapsed = time.monotonic() - started
    assert result is not None
    assert result.signal == signal.SIGKILL
    assert result.stopped_by_us
    assert grace_s <= elapsed < grace_s + 10.0
    assert dead(child)
    assert dead(grandchild)
    assert [e["signal"] for e in events(capture, "child_signalled")] == ["SIGTERM", "SIGKILL"]
    assert events(capture, "child_stopped")[0]["escalated"] is True
    print(f"stop of a group that ignores SIGTERM (grace {grace_s} s): {elapsed * 1000:.1f} ms")


async def test_stop_waits_for_the_rest_of_the_group_after_the_child_exits(
    tmp_path: Path, log: Any, groups: list[int]
) -> None:
    record = tmp_path / "record"
    supervisor = ChildSupervisor(python(LEAVES_GRANDCHILD, str(record)), kill_grace_s=0.3, log=log)
    groups.append(await supervisor.start({}))
    grandchild = int(await read_when_written(record))
    result = await supervisor.stop("revoked")
    assert result is not None
    assert result.signal == signal.SIGTERM  # the child went at once, the grandchild only with SIGKILL
    assert dead(grandchild)


async def test_concurrent_and_repeated_stops_share_one_kill_sequence(
    tmp_path: Path, log: Any, capture: LogCapture, groups: list[int]
) -> None:
    record = tmp_path / "record"
    supervisor = ChildSupervisor(python(STUBBORN, str(record), "stay"), kill_grace_s=0.3, log=log)
    groups.append(await supervisor.start({}))
    await read_when_written(record)
    first, second = await asyncio.gather(supervisor.stop("one"), supervisor.stop("two"))
    assert first == second == await supervisor.stop("three")
    assert [e["signal"] for e in events(capture, "child_signalled")] == ["SIGTERM", "SIGKILL"]
    assert len(events(capture, "child_stopped")) == 1


async def test_spawn_calls_on_spawned_between_the_spawn_and_child_started(
    log: Any, capture: LogCapture, groups: list[int]
) -> None:
    # The daemon logs its elected line there: after the spawn, before child_started.
    supervisor = ChildSupervisor(["sleep", "60"], kill_grace_s=1.0, log=log)
    seen: list[tuple[int | None, bool, int]] = []

    def on_spawned() -> None:
        seen.append((supervisor.pid, supervisor.running, len(events(capture, "child_started"))))

    before_s = time.monotonic()
    pid = supervisor.spawn({}, on_spawned=on_spawned)  # synchronous: no await
    groups.append(pid)
    assert seen == [(pid, True, 0)]
    [started] = events(capture, "child_started")
    # Its times are the spawn's own, whenever the line is rendered.
    assert before_s <= started["monotonic_s"] <= time.monotonic()
    assert isinstance(started["timestamp"], float)
    await asyncio.wait_for(supervisor.stop("done"), SOON_S)


async def test_begin_stop_signals_the_group_before_it_returns(
    tmp_path: Path, log: Any, capture: LogCapture, groups: list[int]
) -> None:
    record = tmp_path / "record"
    supervisor = ChildSupervisor(python(RECORD, str(record), "600"), kill_grace_s=10.0, log=log)
    groups.append(await supervisor.start({}))
    await read_when_written(record)
    stopping = supervisor.begin_stop("stopped")
    # Not a turn of the event loop later: the SIGTERM is out before anything is awaited.
    assert [e["signal"] for e in events(capture, "child_signalled")] == ["SIGTERM"]
    result = await asyncio.wait_for(stopping, SOON_S)
    assert result is not None and result.signal == signal.SIGTERM
    assert await supervisor.stop("again") == result  # idempotent: the same stop


async def test_a_cancelled_stop_still_kills_the_whole_group(
    tmp_path: Path, log: Any, capture: LogCapture, groups: list[int]
) -> None:
    record = tmp_path / "record"
    supervisor = ChildSupervisor(python(STUBBORN, str(record), "stay"), kill_grace_s=0.3, log=log)
    groups.append(await supervisor.start({}))
    child, grandchild = map(int, (await read_when_written(record)).split())
    caller = asyncio.create_task(supervisor.stop("revoked"))
    await until(lambda: bool(events(capture, "child_signalled")), "SIGTERM to be sent")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await until(lambda: dead(child) and dead(grandchild), "the group to be killed anyway")
    result = await asyncio.wait_for(supervisor.stop("again"), SOON_S)
    assert result is not None
    assert result.signal == signal.SIGKILL


async def test_stop_after_the_child_exited_clears_its_group(
    tmp_path: Path, log: Any, groups: list[int]
) -> None:
    record = tmp_path / "record"
    supervisor = ChildSupervisor(python(STUBBORN, str(record), "exit"), kill_grace_s=0.3, log=log)
    groups.append(await supervisor.start({}))
    exited = await asyncio.wait_for(supervisor.wait(), SOON_S)
    assert exited.returncode == 7
    _, grandchild = map(int, (await read_when_written(record)).split())
    assert not dead(grandchild)
    assert await supervisor.stop("child exited") == exited  # not stopped by us: it exited first
    assert dead(grandchild)


async def test_a_child_exiting_as_stop_is_called_is_handled(log: Any) -> None:
    supervisor = ChildSupervisor(["true"], kill_grace_s=5.0, log=log)
    for _ in range(10):
        pid = await supervisor.start({})
        result = await asyncio.wait_for(supervisor.stop("race"), SOON_S)
        assert result is not None
        assert result.pid == pid
        assert result.exit_status in (0, 128 + signal.SIGTERM)  # ended by itself or by us
        assert result.stopped_by_us


async def test_start_is_refused_while_the_last_group_has_members(
    tmp_path: Path, log: Any, groups: list[int]
) -> None:
    record = tmp_path / "record"
    supervisor = ChildSupervisor(python(STUBBORN, str(record), "exit"), kill_grace_s=0.3, log=log)
    first = await supervisor.start({})
    groups.append(first)
    # Nothing has awaited since start(), so its exit cannot have been seen yet.
    with pytest.raises(ChildError, match="still running"):
        await supervisor.start({})
    await asyncio.wait_for(supervisor.wait(), SOON_S)  # it exits after forking its grandchild
    with pytest.raises(ChildError, match=f"process group {first} of the last child still has members"):
        await supervisor.start({})
    await supervisor.stop("clean up")
    record.unlink()
    second = await supervisor.start({})
    groups.append(second)
    assert second != first
    await read_when_written(record)
    await supervisor.stop("done")


# -- the daemon dies -----------------------------------------------------------------


class Daemon:
    """``_supervised_daemon.py`` in a session of its own, as a terminal's job would be."""

    def __init__(self, mode: str, state_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
        self.state_dir = state_dir
        self.process = subprocess.Popen(
            [sys.executable, str(DAEMON), mode, str(state_dir)],
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )

    async def report(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        await until(lambda: bool(select.select([fd], [], [], 0)[0]), "the daemon's report")
        line = self.process.stdout.readline()
        assert line, "the daemon exited without a report"
        report: dict[str, Any] = json.loads(line)
        return report

    async def grandchild(self) -> int:
        return int(await read_when_written(self.state_dir / "grandchild"))

    def kill(self, signum: int = signal.SIGKILL) -> None:
        os.kill(self.process.pid, signum)
        self.process.wait(timeout=SOON_S)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()


async def test_sigkilled_daemon_with_lifeline_leaves_no_child_or_grandchild(
    tmp_path: Path, daemons: list[Daemon], groups: list[int]
) -> None:
    daemon = Daemon("lifeline", tmp_path)
    daemons.append(daemon)
    report = await daemon.report()
    groups.append(report["child"])
    grandchild = await daemon.grandchild()
    assert os.getpgid(grandchild) == report["child"]
    assert not dead(report["guardian"])
    daemon.kill()
    await until(
        lambda: dead(report["child"]) and dead(grandchild) and dead(report["guardian"]),
        "the child, the grandchild and the guardian to die",
    )


async def test_a_fork_of_the_daemon_that_outlives_it_does_not_keep_the_group_alive(
    tmp_path: Path, daemons: list[Daemon], groups: list[int]
) -> None:
    # The fork would hold the pipe's write end, and the guardian would never see end-of-file,
    # had the lifeline not closed it in the child (os.register_at_fork).
    daemon = Daemon("leaked-pipe", tmp_path)
    daemons.append(daemon)
    report = await daemon.report()
    groups.append(report["child"])
    try:
        grandchild = await daemon.grandchild()
        daemon.kill()
        await until(
            lambda: dead(report["child"]) and dead(grandchild) and dead(report["guardian"]),
            "the guardian to kill the group although a fork of the daemon lives on",
        )
        assert not dead(report["holder"])
    finally:
        os.kill(report["holder"], signal.SIGKILL)


async def test_guardian_survives_a_signal_to_the_daemons_process_group(
    tmp_path: Path, daemons: list[Daemon], groups: list[int]
) -> None:
    daemon = Daemon("lifeline", tmp_path)
    daemons.append(daemon)
    report = await daemon.report()
    groups.append(report["child"])
    grandchild = await daemon.grandchild()
    # Ctrl-C in a terminal: SIGINT to the whole foreground group. The daemon ends (here with an
    # unhandled KeyboardInterrupt, without stopping its child); the guardian must not.
    os.killpg(daemon.process.pid, signal.SIGINT)
    daemon.process.wait(timeout=SOON_S)
    await until(lambda: dead(report["child"]) and dead(grandchild), "the child group to be killed")
    await until(lambda: dead(report["guardian"]), "the guardian to exit")


async def test_sigkilled_daemon_without_lifeline_leaves_its_child_running(
    tmp_path: Path, daemons: list[Daemon], groups: list[int]
) -> None:
    # The residual risk the supervisor documents: the child gets no parent-death signal (it
    # would cost an extra exec or a full fork), so only a lifeline takes the group down.
    daemon = Daemon("bare", tmp_path)
    daemons.append(daemon)
    report = await daemon.report()
    child = report["child"]
    groups.append(child)  # killed by the fixture
    await daemon.grandchild()  # so the child is past exec, running Python
    daemon.kill()
    # A SIGKILL sent at the daemon's death would be handled before this SIGSTOP (lower number):
    # a child seen stopped has outlived its parent.
    os.kill(child, signal.SIGSTOP)
    await until(lambda: _state(child) == b"T", "the orphaned child to stop, alive")
    stat = process_stat(child)
    assert stat is not None and stat.ppid != daemon.process.pid


def _state(pid: int) -> bytes | None:
    stat = process_stat(pid)
    return stat.state if stat is not None else None


async def test_start_fails_if_the_guardian_is_gone(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon("guardian-gone", tmp_path)
    daemons.append(daemon)
    report = await daemon.report()
    assert report["error"].startswith("lifeline guardian ")
    assert report["running"] is False
    assert daemon.process.wait(timeout=SOON_S) == 0
