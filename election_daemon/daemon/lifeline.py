"""Dying together: a guardian process that SIGKILLs the leading child's process group if the daemon dies.

The supervisor starts the command in a process group of its own; whatever that group forks lives
on after a SIGKILLed daemon, still acting as leader while another contender is elected. The
guardian closes that gap. :meth:`Lifeline.spawn` starts it, a POSIX shell running
``lifeline.sh`` (next to this module) with the read end of a pipe as its stdin; the daemon writes
``+<pgid>\\n`` to the pipe when a child group starts and ``-<pgid>\\n`` once it is gone. When the
pipe reaches end-of-file, which the kernel guarantees however the daemon ends, the guardian
SIGKILLs every group still registered and exits.

The guardian is exec'd, not a fork of the daemon: CPython starts it with vfork and exec (about
1.2 ms), so it may be spawned at any time, threads or not, and it shares nothing with the
interpreter. Measured beside a real daemon leading for 20 to 60 s on a 2-core VM (dash 0.5.12):
the forked guardian it replaces had 36.6 MB RSS and 8.9 MB private memory (USS: Private_Clean +
Private_Dirty in ``/proc/PID/smaps_rollup``, growing as the daemon's writes unshared the
copy-on-write pages), the shell has 1.7 MB RSS and 0.1 to 0.2 MB private; daemon and guardian
together went from 45.3 to 35.8 MB of PSS. ``ps`` shows it as ``lifeline`` (comm, which the
script writes to ``/proc/PID/comm``: no other write, so it runs under the unit's
ProtectSystem=strict) and ``election-daemon-lifeline …/lifeline.sh DAEMON_PID`` (args).

End-of-file needs every copy of the write end closed. It is close-on-exec, so no program the
daemon execs inherits it, and a Python-level fork (``os.fork``, a ``preexec_fn``,
multiprocessing's fork) closes it in the child (:func:`os.register_at_fork`), so that a fork
outliving the daemon cannot hold the group alive. The forked guardian also armed a parent-death
signal for that case; it is no longer needed, and a shell could not arm one without an extra
exec (setpriv). What remains uncovered: a fork without exec made in C, which the daemon never
does.

Linux only (``/proc/PID/comm``). Residual window: a daemon killed between the child's fork and
the ``+<pgid>`` write (a fraction of a millisecond) leaves the group running.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import weakref
from pathlib import Path

from election_daemon.errors import ChildError

__all__ = ["Lifeline"]

_SHELL = "/bin/sh"
_SCRIPT = Path(__file__).with_name("lifeline.sh")
# argv[0], what ps shows first in args; comm, at most 15 characters, is set by the script.
_NAME = "election-daemon-lifeline"


class Lifeline:
    """The daemon's end of the pipe to its guardian process.

    :meth:`register` and :meth:`unregister` are small non-blocking pipe writes, safe to call from
    the event loop. Several supervisors may share one lifeline.
    """

    def __init__(self, guardian: subprocess.Popen[bytes], write_fd: int) -> None:
        """Use :meth:`spawn`; this only wraps an already running guardian."""
        self._guardian = guardian
        self._fd: int | None = write_fd
        _open_lifelines.add(self)

    @classmethod
    def spawn(cls) -> Lifeline:
        """Start the guardian; any time, from any thread (it is a vfork and exec).

        :raises ChildError: if it cannot be started (no ``/bin/sh``, out of processes).
        """
        read_fd, write_fd = os.pipe()
        try:
            guardian = subprocess.Popen(
                [_NAME, str(_SCRIPT), str(os.getpid())],
                executable=_SHELL,
                stdin=read_fd,
                # Nothing else of the daemon's: a guardian holding its stdout (a journald stream,
                # a test's pipe) would keep that open after the daemon is gone. close_fds (the
                # default) closes everything else.
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Out of the daemon's process group and session, so that a signal to them (Ctrl-C
                # in a terminal) does not reach it; the script ignores them anyway.
                start_new_session=True,
            )
        except OSError as exc:
            os.close(write_fd)
            raise ChildError(f"cannot start the lifeline guardian ({_SHELL}): {exc.strerror}") from exc
        finally:
            os.close(read_fd)
        # A guardian that stops reading (SIGSTOP) must never block the event loop: a full pipe
        # then fails the write instead.
        os.set_blocking(write_fd, False)
        return cls(guardian, write_fd)

    @property
    def guardian_pid(self) -> int:
        """The guardian process's pid."""
        return self._guardian.pid

    @property
    def alive(self) -> bool:
        """Whether the guardian still runs; asked without reaping it (WNOWAIT), so :meth:`close`
        still can."""
        if self._fd is None:
            return False
        try:
            exited = os.waitid(os.P_PID, self._guardian.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped by someone else
            return False
        return exited is None

    def register(self, pgid: int) -> None:
        """Have the guardian kill process group ``pgid`` if the daemon dies.

        :raises ValueError: if ``pgid`` is not a process group id the guardian may kill.
        :raises ChildError: if the guardian is gone or the lifeline is closed.
        """
        self._send(b"+", pgid)

    def unregister(self, pgid: int) -> None:
        """Forget process group ``pgid``; call it once no process of the group remains.

        :raises ValueError: if ``pgid`` is not a process group id the guardian may kill.
        :raises ChildError: if the guardian is gone or the lifeline is closed.
        """
        self._send(b"-", pgid)

    def close(self) -> None:
        """Close the pipe: the guardian kills any group still registered, exits, and is reaped.

        Idempotent.
        """
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        self._guardian.wait()

    def _send(self, sign: bytes, pgid: int) -> None:
        # What reaches the shell's kill: a plain int (no bool, no subclass with its own
        # formatting), never 0 (the guardian's own group) or 1 (every process it may signal).
        if type(pgid) is not int or pgid < 2:
            raise ValueError(f"not a process group id: {pgid!r}")
        if self._fd is None:
            raise ChildError("the lifeline is closed")
        try:
            # Under PIPE_BUF bytes, so written whole or not at all.
            os.write(self._fd, b"%s%d\n" % (sign, pgid))
        except OSError as exc:
            raise ChildError(f"lifeline guardian {self._guardian.pid} is gone: {exc.strerror}") from exc

    def _forget_in_fork_child(self) -> None:
        """In a forked child: close our copy of the write end, which would hold off end-of-file."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


_open_lifelines: weakref.WeakSet[Lifeline] = weakref.WeakSet()


def _forget_lifelines_in_fork_child() -> None:
    for lifeline in list(_open_lifelines):
        lifeline._forget_in_fork_child()


# Once for the process: a fork that outlives the daemon (the daemon never makes one, but a
# library or a future change might) must not keep the guardian waiting for end-of-file.
os.register_at_fork(after_in_child=_forget_lifelines_in_fork_child)
