"""Dying together: a guardian process that SIGKILLs the leading child's process group if the daemon dies.

PR_SET_PDEATHSIG on the child reaches only the child itself: whatever it forked lives on in its
process group after a SIGKILLed daemon, still acting as leader while another contender is
elected. The guardian closes that gap. :meth:`Lifeline.spawn` forks it at daemon start, before
the event loop or any thread exists; the daemon then writes ``+<pgid>\\n`` to a pipe when a child
group starts and ``-<pgid>\\n`` once it is gone. When the pipe reaches end-of-file, which the
kernel guarantees however the daemon ends, the guardian SIGKILLs every group still registered
and exits.

Linux only (prctl). Residual window: a daemon killed between the child's fork and the
``+<pgid>`` write (a fraction of a millisecond) leaves only the child's own parent-death signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from types import FrameType

from election_daemon.errors import ChildError

__all__ = ["Lifeline", "set_parent_death_signal"]

_PR_SET_PDEATHSIG = 1

# The guardian's own parent-death signal. Not SIGKILL: it must outlive the daemon long enough to
# kill the registered groups. This path matters only if the pipe's write end leaked into a process
# that outlives the daemon (a fork without exec), so that end-of-file never comes.
_PARENT_DEATH_SIGNAL = signal.SIGHUP

# What a terminal or a service manager may send to the daemon's whole process group; the guardian
# leaves that group (setsid) but may still get them before it does, or from a careless `kill`.
_IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
# The kernel reads every prctl argument as unsigned long; without argtypes ctypes would pass C ints
# and leave the upper halves of the registers undefined.
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def set_parent_death_signal(signum: int) -> None:
    """Ask the kernel to send ``signum`` to this process when the thread that forked it exits.

    :raises OSError: if prctl(PR_SET_PDEATHSIG) fails.
    """
    if _prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


class Lifeline:
    """The daemon's end of the pipe to its guardian process.

    :meth:`register` and :meth:`unregister` are small non-blocking pipe writes, safe to call from
    the event loop. Several supervisors may share one lifeline.
    """

    def __init__(self, guardian_pid: int, write_fd: int) -> None:
        """Use :meth:`spawn`; this only wraps an already running guardian."""
        self._guardian_pid = guardian_pid
        self._fd: int | None = write_fd

    @classmethod
    def spawn(cls) -> Lifeline:
        """Fork the guardian. Call it once at daemon start, before any thread or event loop exists.

        :raises ChildError: if a thread is already running (forking a threaded process can leave
            the guardian deadlocked on a lock that another thread held).
        """
        if threading.active_count() > 1:
            raise ChildError("Lifeline.spawn() must be called before any thread is started")
        read_fd, write_fd = os.pipe()
        daemon_pid = os.getpid()
        guardian_pid = os.fork()
        if guardian_pid == 0:
            try:
                _guard(read_fd, daemon_pid)
            finally:
                os._exit(1)
        os.close(read_fd)
        # A guardian that stops reading (SIGSTOP) must never block the event loop: a full pipe
        # then fails the write instead.
        os.set_blocking(write_fd, False)
        return cls(guardian_pid, write_fd)

    @property
    def guardian_pid(self) -> int:
        """The guardian process's pid."""
        return self._guardian_pid

    @property
    def alive(self) -> bool:
        """Whether the guardian still runs; asked without reaping it (WNOWAIT), so :meth:`close`
        still can."""
        if self._fd is None:
            return False
        try:
            exited = os.waitid(os.P_PID, self._guardian_pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped by someone else
            return False
        return exited is None

    def register(self, pgid: int) -> None:
        """Have the guardian kill process group ``pgid`` if the daemon dies.

        :raises ChildError: if the guardian is gone or the lifeline is closed.
        """
        self._send(b"+%d\n" % pgid)

    def unregister(self, pgid: int) -> None:
        """Forget process group ``pgid``; call it once no process of the group remains.

        :raises ChildError: if the guardian is gone or the lifeline is closed.
        """
        self._send(b"-%d\n" % pgid)

    def close(self) -> None:
        """Close the pipe: the guardian kills any group still registered, exits, and is reaped.

        Idempotent.
        """
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        with contextlib.suppress(ChildProcessError):  # already reaped by someone else
            os.waitpid(self._guardian_pid, 0)

    def _send(self, line: bytes) -> None:
        if self._fd is None:
            raise ChildError("the lifeline is closed")
        try:
            # Under PIPE_BUF bytes, so written whole or not at all.
            os.write(self._fd, line)
        except OSError as exc:
            raise ChildError(f"lifeline guardian {self._guardian_pid} is gone: {exc.strerror}") from exc


def _guard(read_fd: int, daemon_pid: int) -> None:
    """The guardian's whole life, in the forked child: no logging, no asyncio, no threads."""
    groups: set[int] = set()

    def kill_groups_and_exit() -> None:
        for pgid in groups:
            with contextlib.suppress(OSError):  # already gone
                os.killpg(pgid, signal.SIGKILL)
        os._exit(0)

    def on_parent_death(_signum: int, _frame: FrameType | None) -> None:
        if os.getppid() != daemon_pid:
            kill_groups_and_exit()

    for signum in _IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    os.setsid()
    signal.signal(_PARENT_DEATH_SIGNAL, on_parent_death)
    set_parent_death_signal(_PARENT_DEATH_SIGNAL)
    if os.getppid() != daemon_pid:
        # The daemon died before the parent-death signal was armed: nothing is registered yet.
        os._exit(0)
    _rename(b"lifeline")
    # Keep only the read end, as fd 0: above all the pipe's write end must go, or end-of-file
    # would never come; and the daemon's stdout (a journald stream) should not be held open.
    os.dup2(read_fd, 0)
    os.closerange(1, os.sysconf("SC_OPEN_MAX"))
    try:
        pending = b""
        while chunk := os.read(0, 4096):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                sign, number = line[:1], line[1:]
                if number.isdigit():
                    if sign == b"+":
                        groups.add(int(number))
                    elif sign == b"-":
                        groups.discard(int(number))
    finally:  # end-of-file, or any failure to keep watching
        kill_groups_and_exit()


def _rename(name: bytes) -> None:
    """Set the process name ``ps -o comm`` and ``top`` show, to tell the guardian from the daemon."""
    with contextlib.suppress(OSError):  # cosmetic only
        fd = os.open("/proc/self/comm", os.O_WRONLY)
        try:
            os.write(fd, name)
        finally:
            os.close(fd)
