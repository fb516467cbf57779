"""The lifeline guardian as a process: its size and name, the groups it kills, what it ignores.

Real processes throughout. test_supervisor.py covers it together with the ChildSupervisor (a
SIGKILLed stand-in daemon, a fork that outlives it, Ctrl-C to the daemon's group).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _processes import SOON_S, dead, until

import election_daemon
from election_daemon.daemon.lifeline import Lifeline
from election_daemon.testing import process_group_alive

pytestmark = pytest.mark.timeout(60)

PACKAGE_ROOT = Path(election_daemon.__file__).resolve().parent.parent

# The budget for the guardian's private memory, one per daemon.
MAX_PRIVATE_KB = 3 * 1024

# A stand-in daemon: spawns a lifeline, registers the groups on its command line ("-N" then
# unregisters N), prints the guardian's pid, then sleeps until killed, or with "die" SIGKILLs
# itself right after its last write, before the guardian can have read it.
STAND_IN = """
import os, signal, sys, time
from election_daemon.daemon.lifeline import Lifeline
lifeline = Lifeline.spawn()
for arg in sys.argv[2:]:
    if arg.startswith("-"):
        lifeline.unregister(int(arg[1:]))
    else:
        lifeline.register(int(arg))
print(lifeline.guardian_pid, flush=True)
if sys.argv[1] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(600)
"""


@pytest.fixture
def lifeline() -> Iterator[Lifeline]:
    spawned = Lifeline.spawn()
    yield spawned
    spawned.close()


def start_group(groups: list[int]) -> int:
    """A process group of two sleeping processes, as a command with a grandchild would be."""
    leader = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 600 & exec sleep 600"],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    groups.append(leader.pid)
    return leader.pid


async def two_members(pgid: int) -> None:
    def count() -> int:
        members = 0
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_bytes() if entry.name.isdigit() else b""
            except OSError:
                continue
            if stat and int(stat[stat.rindex(b")") + 2 :].split()[2]) == pgid:
                members += 1
        return members

    await until(lambda: count() == 2, f"group {pgid} to have its two members")


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def program(pid: int) -> str:
    return os.path.realpath(f"/proc/{pid}/exe")


def names_in_ps(pid: int) -> list[str]:
    """comm and args as ps shows them (-ww: args not cut to the terminal's width)."""
    shown = subprocess.run(
        ["ps", "-ww", "-o", "comm=,args=", "-p", str(pid)], capture_output=True, text=True, check=True
    )
    return shown.stdout.split()


def start_stand_in(how: str, *pgids: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", STAND_IN, how, *map(str, pgids)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)},
    )


async def test_the_guardian_is_a_small_process_named_lifeline(lifeline: Lifeline) -> None:
    pid = lifeline.guardian_pid
    await until(lambda: comm(pid) == "lifeline", "the guardian to name itself")
    memory = smaps_rollup_kb(pid)
    private_kb = memory["Private_Clean"] + memory["Private_Dirty"]
    assert private_kb < MAX_PRIVATE_KB, memory
    # An exec'd shell, not a copy of this interpreter.
    assert program(pid) != program(os.getpid())
    shown = names_in_ps(pid)
    assert shown[:2] == ["lifeline", "election-daemon-lifeline"]
    assert shown[2].endswith("/lifeline.sh")
    assert shown[3] == str(os.getpid())
    # A session of its own: out of reach of signals to the daemon's group or session.
    assert os.getsid(pid) == pid


@pytest.mark.parametrize("how", ["killed", "die"])
async def test_a_sigkilled_daemon_takes_its_registered_groups_and_no_other(
    how: str, groups: list[int]
) -> None:
    registered, unregistered, late = start_group(groups), start_group(groups), start_group(groups)
    for pgid in (registered, unregistered, late):
        await two_members(pgid)
    stand_in = start_stand_in(how, registered, unregistered, -unregistered, late)
    try:
        assert stand_in.stdout is not None
        guardian = int(await asyncio.to_thread(stand_in.stdout.readline))
        if how == "killed":
            stand_in.kill()
        assert stand_in.wait(timeout=SOON_S) == -signal.SIGKILL
    finally:
        stand_in.kill()
        stand_in.wait()
        if stand_in.stdout is not None:
            stand_in.stdout.close()
    await until(
        lambda: not process_group_alive(registered) and not process_group_alive(late),
        "the registered groups to be killed",
    )
    await until(lambda: dead(guardian), "the guardian to exit")
    assert process_group_alive(unregistered)


async def test_the_guardian_ignores_what_may_be_sent_to_the_daemon(
    lifeline: Lifeline, groups: list[int]
) -> None:
    pgid = start_group(groups)
    await two_members(pgid)
    lifeline.register(pgid)
    ignored = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)
    await until(lambda: ignored_signals(lifeline.guardian_pid) >= set(ignored), "the script's trap")
    for signum in ignored:
        os.kill(lifeline.guardian_pid, signum)
    assert lifeline.alive
    # A signal that kills is acted on when sent: a guardian still there kills the group now.
    lifeline.close()
    await until(lambda: not process_group_alive(pgid), "the group to be killed")


def ignored_signals(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {signum for signum in range(1, 65) if mask & (1 << (signum - 1))}
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


async def test_spawn_needs_no_thread_free_process(groups: list[int]) -> None:
    # Started from a worker thread while the event loop's runs: a vfork and exec, not a fork.
    lifeline = await asyncio.to_thread(Lifeline.spawn)
    try:
        pgid = start_group(groups)
        await two_members(pgid)
        lifeline.register(pgid)
        lifeline.register(pgid)  # twice is once
        lifeline.unregister(pgid)
        lifeline.register(pgid)
    finally:
        lifeline.close()
    await until(lambda: not process_group_alive(pgid), "the group to be killed")


@pytest.mark.parametrize("pgid", [0, 1, -5, True, "12", 12.0])
def test_only_group_ids_reach_the_guardian(lifeline: Lifeline, pgid: Any) -> None:
    with pytest.raises(ValueError, match="not a process group id"):
        lifeline.register(pgid)
    with pytest.raises(ValueError, match="not a process group id"):
        lifeline.unregister(pgid)
    assert lifeline.alive


def test_the_guardian_drops_lines_that_are_not_group_ids(tmp_path: Path) -> None:
    # The script's own check, should anything else ever write to the pipe: fed directly, it
    # would otherwise SIGKILL group 1 (everything we may signal) or its own group (0).
    script = Path(election_daemon.__file__).parent / "daemon" / "lifeline.sh"
    trace = tmp_path / "trace"
    lines = ["+0", "+1", "+01", "+-3", "+1 2", "+$(true)", "+", "x5", "5", "+7", "+8", "-7", "+9", "+9"]
    # kill replaced by a function that records its arguments, in the same shell.
    shim = f'kill() {{ printf "%s\\n" "$*" >>"{trace}"; }}; . "{script}"'
    subprocess.run(["/bin/sh", "-c", shim], input="\n".join([*lines, ""]), text=True, check=True)
    assert trace.read_text().splitlines() == ["-s KILL -- -8", "-s KILL -- -9"]
