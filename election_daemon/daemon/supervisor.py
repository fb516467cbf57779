"""Process control for the leader-only command: its own process group, SIGTERM, grace, SIGKILL.

The supervisor knows nothing of ZooKeeper or elections (Patroni's split between HA logic and
process control): the daemon calls :meth:`ChildSupervisor.start` when leadership begins and
:meth:`ChildSupervisor.stop` when it ends. The child runs in a session and process group of its
own so that one signal reaches everything it started, and :meth:`~ChildSupervisor.stop` returns
only once no process of that group is left. The group dies with the daemon through the
:class:`~election_daemon.daemon.lifeline.Lifeline` guardian, which SIGKILLs it when the daemon
dies, however it dies.

The child is spawned with ``start_new_session`` and nothing else, so CPython starts it with
vfork and exec, no Python code in between: measured on a 2-core VM, call to exec about 0.2 ms.
There is no parent-death signal on the child itself: setting one needs code between fork and
exec (a ``preexec_fn``, which forces a full fork, 1.8 ms with a small heap and 7.5 ms with a
200 MB one, and is unsafe once threads exist) or an extra exec (``setpriv --pdeathsig``, 0.9 ms
more), and the lifeline covers the whole group anyway. Residual risks: without a lifeline
(library-like use, tests), a daemon that is SIGKILLed leaves its child running; with one, a
daemon killed between the fork and the lifeline's registration, a fraction of a millisecond of
synchronous code, does too.

Linux only (pidfd, /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from election_daemon import _processes
from election_daemon.daemon.childoutput import ChildOutput, OrderedLog, OutputPipe
from election_daemon.daemon.eventlog import EventLog
from election_daemon.daemon.lifeline import Lifeline
from election_daemon.errors import ChildError, ConfigError
from election_daemon.library.events import Event

__all__ = ["RESOURCE_ERRNOS", "ChildExit", "ChildResourceError", "ChildSupervisor", "process_group_alive"]

# How long processes may take to vanish once SIGKILLed (uninterruptible sleep, a loaded machine).
_KILL_WAIT_S = 5.0
# Polling for the rest of the group backs off from the first to the last interval: a group that
# went with its leader is seen at once, one that lingers costs little.
_GROUP_POLL_FIRST_S = 0.002
_GROUP_POLL_MAX_S = 0.05

# The daemon's own stderr, whatever Python's sys.stderr was replaced by.
_STDERR_FD = 2

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})
"""Errors that say the system (or this process) is out of something for now (file descriptors,
processes, memory), not that the command is wrong."""


class ChildResourceError(ChildError):
    """The command could not be started for want of resources (EMFILE, ENFILE, EAGAIN, ENOMEM).

    Not the command's fault: it exists and is executable. Trying again later may work.
    """


@dataclass(frozen=True, slots=True)
class ChildExit:
    """How a child ended."""

    pid: int
    """The child's pid (also its process group id)."""

    returncode: int
    """As :attr:`subprocess.Popen.returncode`: the exit code, or ``-N`` if signal N ended it."""

    stopped_by_us: bool
    """True if :meth:`ChildSupervisor.stop` was called before the child's exit was seen; an
    exit at the very moment of the call also counts as stopped."""

    @property
    def signal(self) -> int | None:
        """The signal that ended the child, or ``None`` if it exited."""
        return -self.returncode if self.returncode < 0 else None

    @property
    def exit_status(self) -> int:
        """A shell's ``$?`` for this exit: the exit code, or 128+N for signal N."""
        return 128 - self.returncode if self.returncode < 0 else self.returncode


class _Child:
    """One started child: its process, its exit, and the one stop sequence it may get."""

    def __init__(self, popen: subprocess.Popen[bytes], exited: asyncio.Future[ChildExit]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.exited = exited
        self.started_at = time.monotonic()
        self.stop_requested = False
        self.stop_task: asyncio.Task[ChildExit] | None = None
        self.group_released = False
        self.pipes: list[OutputPipe] = []
        """Its output pipes in ``log`` mode, read until its group is gone."""


class ChildSupervisor:
    """Starts, watches and stops the leader-only command; one child at a time.

    :param command: the program and its arguments. The program is looked up on the daemon's
        ``PATH`` now, so that a missing or non-executable program is a one-line
        :class:`ChildError` before any election.
    :param kill_grace_s: seconds between SIGTERM and SIGKILL when stopping.
    :param log: a structlog-style logger for ``child_*`` events.
    :param lifeline: the daemon's guardian; with it, a SIGKILLed daemon leaves none of the
        child's process group behind. Without it nothing kills the group if the daemon dies
        first (see the module's docstring).
    :param environment: what the child's environment starts from, before :meth:`start`'s
        ``env``; ``None`` for the daemon's whole environment as it is at each start.
    :param output: where the child's stdout and stderr go (:class:`ChildOutput`); in ``log``
        mode, ``log`` gets them as ``child_output`` lines, and the supervisor's own events wait
        behind the lines before them.
    :raises ConfigError: on an empty command or a non-positive grace (``field`` names which).
    :raises ChildError: if the program cannot be found or executed.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        kill_grace_s: float,
        log: EventLog,
        lifeline: Lifeline | None = None,
        environment: Mapping[str, str] | None = None,
        output: ChildOutput = ChildOutput.INHERIT,
    ) -> None:
        if not command or not command[0]:
            raise ConfigError("command", "must name a program")
        if not (math.isfinite(kill_grace_s) and kill_grace_s > 0):
            raise ConfigError("kill_grace_s", f"must be a positive number of seconds, got {kill_grace_s!r}")
        self._command = tuple(command)
        self._kill_grace_s = float(kill_grace_s)
        self._log = OrderedLog(log)
        self._output = ChildOutput(output)
        self._lifeline = lifeline
        self._environment = None if environment is None else dict(environment)
        self._executable = self.check_command()
        self._child: _Child | None = None

    def check_command(self) -> str:
        """Resolve the program to an absolute path now, as :meth:`start` will run it.

        :raises ChildError: if it is not found, is a directory, or is not executable.
        """
        program = self._command[0]
        path = program if "/" in program else shutil.which(program)
        if path is None:
            raise ChildError(f"command not found on PATH: {program}")
        if not os.path.exists(path):
            raise ChildError(f"command not found: {program}")
        if os.path.isdir(path):
            raise ChildError(f"command is a directory: {program}")
        if not os.access(path, os.X_OK):
            raise ChildError(f"command is not executable: {program}")
        return os.path.abspath(path)

    @property
    def executable(self) -> str:
        """The absolute path of the program :meth:`start` runs."""
        return self._executable

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the child's exit has been seen."""
        return self._child is not None and not self._child.exited.done()

    @property
    def pid(self) -> int | None:
        """The current or last child's pid, or ``None`` before the first start."""
        return self._child.pid if self._child is not None else None

    @property
    def pgid(self) -> int | None:
        """The current or last child's process group id: its pid, since it leads a new session."""
        return self.pid

    async def start(self, env: Mapping[str, str], *, log_fields: Mapping[str, object] | None = None) -> int:
        """:meth:`spawn`, for a coroutine."""
        return self.spawn(env, log_fields=log_fields)

    def spawn(
        self,
        env: Mapping[str, str],
        *,
        log_fields: Mapping[str, object] | None = None,
        on_spawned: Callable[[], None] | None = None,
    ) -> int:
        """Start the command with ``env`` over the daemon's environment (or the ``environment``
        given at construction); return its pid.

        stdin is ``/dev/null``; stdout and stderr go where ``output`` says. ``log_fields`` (the
        term's token) are added to its ``child_output`` lines, which may be logged after the term
        ended. Returns as soon as the program has been executed (well under a few milliseconds).
        Synchronous, so that a caller can start the command within the very callback that tells
        it to, with no turn of the event loop in between. ``on_spawned`` is called once the
        command runs, before ``child_started`` is logged (whose times are the spawn's own): the
        daemon logs its ``elected`` line there, after the spawn but before ``child_started``.

        :raises ChildError: if the previous child or any process of its group is still alive,
            or if the program cannot be executed.
        :raises ChildResourceError: if it could not be started for want of file descriptors,
            processes or memory (a :class:`ChildError` too).
        """
        previous = self._child
        if previous is not None:
            if not previous.exited.done():
                raise ChildError(f"child {previous.pid} is still running: stop it first")
            if process_group_alive(previous.pid):
                raise ChildError(
                    f"process group {previous.pid} of the last child still has members: stop it first"
                )
            self._release_group(previous)
        started = time.monotonic()
        base = os.environ if self._environment is None else self._environment
        # Synchronous on purpose, from fork until the child is known to the reaper and to the
        # lifeline: with no await in between, a cancelled caller cannot orphan it. Spawning takes
        # a fraction of a millisecond (vfork, exec), less than asyncio's subprocess plumbing.
        readers: list[int] = []
        try:
            with _output_pipes(self._output) as (stdout, stderr, readers):
                # Nothing but start_new_session: anything that runs code in the child before
                # its exec (preexec_fn, user or group changes) loses CPython's vfork.
                popen = subprocess.Popen(
                    [self._executable, *self._command[1:]],
                    env={**base, **env},
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                )
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                raise ChildResourceError(
                    f"cannot start {self._executable} for now: {exc.strerror} (out of resources)"
                ) from exc
            raise ChildError(f"cannot start {self._executable}: {exc.strerror}") from exc
        spawned_s, spawned_at = time.monotonic(), time.time()
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError as exc:
            _close_all(readers)
            _kill_unwatched(popen)
            if exc.errno in RESOURCE_ERRNOS:
                raise ChildResourceError(
                    f"cannot watch child {popen.pid} for now: {exc.strerror} (out of resources)"
                ) from exc
            raise ChildError(
                f"cannot watch child {popen.pid} (pidfd_open needs Linux 5.3): {exc.strerror}"
            ) from exc
        loop = asyncio.get_running_loop()
        child = _Child(popen, loop.create_future())
        if self._lifeline is not None:
            try:
                self._lifeline.register(child.pid)
            except ChildError:
                os.close(pidfd)
                _close_all(readers)
                _kill_unwatched(popen)
                raise
        loop.add_reader(pidfd, self._on_exit, child, pidfd)
        self._child = child
        fields = {"pid": child.pid, **(log_fields or {})}
        child.pipes = [
            OutputPipe(fd, stream, self._log, fields)
            for fd, stream in zip(readers, ("stdout", "stderr")[: len(readers)], strict=True)
        ]
        try:
            if on_spawned is not None:
                on_spawned()
        finally:
            self._log.info(
                Event.CHILD_STARTED,
                pid=child.pid,
                pgid=child.pid,
                command=self._executable,
                duration_s=round(spawned_s - started, 6),
                timestamp=spawned_at,
                monotonic_s=round(spawned_s, 6),
            )
        return child.pid

    async def stop(self, reason: str) -> ChildExit | None:
        """Stop the child and everything in its process group; ``None`` if none was ever started.

        SIGTERM goes to the whole group at once, SIGKILL after ``kill_grace_s`` if anything of
        the group is left; returns once the child has been reaped and no process of its group
        remains. Idempotent and safe to call concurrently or after the child exited by itself
        (then it only clears what is left of the group). Cancelling the caller does not
        interrupt the kill sequence.

        :raises ChildError: if the group survives SIGKILL for several seconds, or may not be
            signalled; calling again retries.
        """
        return await self.begin_stop(reason)

    def begin_stop(self, reason: str) -> asyncio.Future[ChildExit | None]:
        """:meth:`stop`, whose SIGTERM is sent within this very call rather than a turn of the
        event loop later; the future (shielded: cancelling it does not cancel the stop) gives
        what :meth:`stop` returns, or raises what it raises."""
        child = self._child
        if child is None:
            nothing: asyncio.Future[ChildExit | None] = asyncio.get_running_loop().create_future()
            nothing.set_result(None)
            return nothing
        task = child.stop_task
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            # Set before any await: an exit seen from now on was caused, or raced, by this stop.
            child.stop_requested = True
            started = time.monotonic()
            refused = None
            try:
                self._signal(child, signal.SIGTERM, reason)
            except ChildError as exc:
                refused = exc  # raised by the task, to whoever awaits the stop
            task = child.stop_task = asyncio.create_task(self._stop(child, reason, started, refused))
        return asyncio.shield(task)

    async def wait(self) -> ChildExit:
        """The current child's exit, once seen; whether by itself or through :meth:`stop`.

        The rest of its process group may still run: :meth:`stop` clears it.

        :raises ChildError: if no child was ever started.
        """
        if self._child is None:
            raise ChildError("no child has been started")
        return await asyncio.shield(self._child.exited)

    async def _stop(
        self, child: _Child, reason: str, started: float, refused: ChildError | None
    ) -> ChildExit:
        """The rest of a stop whose SIGTERM has been sent (or ``refused``) at ``started``."""
        if refused is not None:
            raise refused
        escalated = False
        if not await self._wait_gone(child, started + self._kill_grace_s):
            escalated = True
            self._signal(child, signal.SIGKILL, reason)
            if not await self._wait_gone(child, time.monotonic() + _KILL_WAIT_S):
                error = f"process group {child.pid} still has members {_KILL_WAIT_S:g} s after SIGKILL"
                # Logged here too: the caller may have been cancelled and never see the error.
                self._log.error(Event.CHILD_STOP_FAILED, pid=child.pid, pgid=child.pid, reason=error)
                raise ChildError(error)
        self._release_group(child)
        result = child.exited.result()
        self._log.info(
            Event.CHILD_STOPPED,
            pid=child.pid,
            pgid=child.pid,
            reason=reason,
            exit_code=result.exit_status,
            escalated=escalated,
            duration_s=round(time.monotonic() - started, 6),
        )
        # Stopped means told, too: the command's last lines are in the log before this returns.
        await self._log.flushed()
        return result

    def _signal(self, child: _Child, signum: signal.Signals, reason: str) -> None:
        """Signal the group if it has members."""
        if not child.exited.done() or process_group_alive(child.pid):
            try:
                os.killpg(child.pid, signum)
            except ProcessLookupError:
                pass  # the whole group went between the check and the signal
            except PermissionError as exc:
                raise ChildError(f"not permitted to signal process group {child.pid}") from exc
            else:
                self._log.info(
                    Event.CHILD_SIGNALLED, pid=child.pid, pgid=child.pid, signal=signum.name, reason=reason
                )

    async def _wait_gone(self, child: _Child, deadline: float) -> bool:
        """True once the child is reaped and its group gone, False at ``deadline``."""
        # The leader first, without polling: it is a zombie, and so a group member, until reaped.
        await asyncio.wait([child.exited], timeout=max(0.0, deadline - time.monotonic()))
        if not child.exited.done():
            return False
        interval = _GROUP_POLL_FIRST_S
        while process_group_alive(child.pid):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(interval)
            interval = min(interval * 2, _GROUP_POLL_MAX_S)
        return True

    def _on_exit(self, child: _Child, pidfd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(pidfd)
        os.close(pidfd)
        # The pidfd is readable once the child is a zombie, so this wait does not block.
        returncode = child.popen.wait()
        # What it wrote before it exited is logged before its exit.
        for pipe in child.pipes:
            pipe.drain()
        result = ChildExit(pid=child.pid, returncode=returncode, stopped_by_us=child.stop_requested)
        child.exited.set_result(result)
        group_alive = process_group_alive(child.pid)
        self._log.info(
            Event.CHILD_EXITED,
            pid=child.pid,
            pgid=child.pid,
            exit_code=result.exit_status,
            signal=signal.Signals(result.signal).name if result.signal is not None else None,
            stopped_by_us=result.stopped_by_us,
            group_alive=group_alive,
            duration_s=round(time.monotonic() - child.started_at, 6),
        )
        if not group_alive:
            self._release_group(child)

    def _release_group(self, child: _Child) -> None:
        """Tell the lifeline the group is gone, once: a pgid the guardian remembers could be reused."""
        if child.group_released:
            return
        child.group_released = True
        # Nothing of the group is left to write (a process that left it loses its pipe).
        for pipe in child.pipes:
            pipe.close()
        if self._lifeline is not None:
            try:
                self._lifeline.unregister(child.pid)
            except ChildError as exc:
                self._log.warning(Event.LIFELINE_LOST, pgid=child.pid, reason=str(exc))


def process_group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie (see
    :func:`election_daemon._processes.process_group_alive`: never declared gone unseen)."""
    return _processes.process_group_alive(pgid, members=_process_groups_and_states)


_process_groups_and_states = _processes.process_groups_and_states


@contextlib.contextmanager
def _output_pipes(output: ChildOutput) -> Iterator[tuple[int | None, int | None, list[int]]]:
    """The child's stdout and stderr for ``output``, and the read ends to log (``log`` mode).

    The write ends are the child's alone: closed here once it has them (or failed to start);
    the read ends are closed too if starting fails.
    """
    if output is ChildOutput.INHERIT:
        yield None, None, []
        return
    if output is ChildOutput.STDERR:
        yield _STDERR_FD, None, []
        return
    readers: list[int] = []
    writers: list[int] = []
    try:
        for _ in range(2):
            read_end, write_end = os.pipe()
            readers.append(read_end)
            writers.append(write_end)
        yield writers[0], writers[1], readers
    except BaseException:
        _close_all(readers)
        raise
    finally:
        _close_all(writers)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def _kill_unwatched(popen: subprocess.Popen[bytes]) -> None:
    """Kill a child we cannot supervise, with its group, before it can do any work."""
    os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()
