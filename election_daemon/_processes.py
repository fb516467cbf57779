"""Processes on Linux, for the daemon and for whatever runs daemons: /proc, process groups, dying together.

One place for what the daemon's supervisor, the demo, ``verify``, the benchmark and the tests
all need: :func:`process_stat` reads ``/proc/<pid>/stat``, :func:`process_alive` and
:func:`process_group_alive` tell the living from zombies, and :func:`parent_death_prefix` is the
argv prefix that has the kernel SIGKILL a child when its parent dies (for the processes the test
harness, the demo, ``verify`` and the benchmarks start; the daemon's own leader-only command does
without it, see :mod:`election_daemon.daemon.supervisor`).

Only the standard library: the daemon and :mod:`election_daemon.testing` both import it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "ProcessStat",
    "parent_death_prefix",
    "process_alive",
    "process_group_alive",
    "process_groups_and_states",
    "process_stat",
]


@dataclass(frozen=True, slots=True)
class ProcessStat:
    """The fields of ``/proc/<pid>/stat`` that process control needs."""

    pid: int
    state: bytes
    """One letter: ``R``, ``S``, ``D``, ``T``, ``Z`` (zombie: dead, not yet reaped) ..."""
    ppid: int
    pgrp: int

    @property
    def alive(self) -> bool:
        """Not a zombie."""
        return self.state != b"Z"


def process_stat(pid: int) -> ProcessStat | None:
    """Process ``pid``'s state, parent and process group from /proc; None if it does not exist.

    :raises OSError: if /proc cannot be read for another reason (out of file descriptors).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped while being read
        return None
    # The command name (field 2) may contain spaces and parentheses; the fields after its
    # closing parenthesis are fixed: state, ppid, pgrp, ...
    state, ppid, pgrp = stat[stat.rindex(b")") + 2 :].split(maxsplit=3)[:3]
    return ProcessStat(pid, state, int(ppid), int(pgrp))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an init that never reaps keeps those)."""
    stat = process_stat(pid)
    return stat is not None and stat.alive


def process_groups_and_states() -> Iterator[tuple[int, bytes]]:
    """(process group, state letter) of every process, from /proc.

    :raises OSError: if /proc cannot be read (out of file descriptors).
    """
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit() and (stat := process_stat(int(entry.name))) is not None:
                yield stat.pgrp, stat.state


def process_group_alive(
    pgid: int, *, members: Callable[[], Iterable[tuple[int, bytes]]] = process_groups_and_states
) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie.

    ``killpg(pgid, 0)`` alone also counts zombies, which are dead already and which an init
    that does not reap orphans (some containers' PID 1) keeps in the group for ever; so when it
    finds members, /proc tells whether any of them is alive. If /proc cannot be read (out of
    file descriptors), the members count as alive: a group is never declared gone unseen.

    :param members: where the (group, state) pairs come from; /proc unless a test says otherwise.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a member we may not signal (another user's) exists
    try:
        return any(pgrp == pgid and state != b"Z" for pgrp, state in members())
    except OSError:
        return True


@functools.cache
def parent_death_prefix() -> tuple[str, ...]:
    """The argv prefix that starts a command with PR_SET_PDEATHSIG=SIGKILL; ``()`` if there is none.

    It is util-linux ``setpriv --pdeathsig KILL --`` (2.33 or later), which sets the signal and
    execs the command, so the pid stays the command's and the signal survives the exec. Probed
    once: a ``setpriv`` missing from ``PATH`` or too old to know ``--pdeathsig`` gives ``()``.
    The kernel sends the signal when the *thread* that forked the command ends, so fork from a
    thread that lives as long as the parent (the event loop's).

    Preferred to a ``preexec_fn`` calling prctl: CPython then keeps its vfork fast path, and no
    Python code runs between fork and exec, which is unsafe once threads exist (asyncio's
    executor and child-watcher threads) and forces a full fork() whose cost grows with the heap.
    Measured on a 2-core VM, call to exec: 0.2 ms plus 0.9 ms for setpriv's own exec, against
    1.8 ms with a preexec_fn and a small heap, 7.5 ms with a 200 MB one. That 0.9 ms is why the
    daemon's supervisor no longer uses it: its lifeline covers the command's whole group.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    prefix = (setpriv, "--pdeathsig", "KILL", "--")
    try:
        probe = subprocess.run(
            [*prefix, setpriv, "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return prefix if probe.returncode == 0 else ()
