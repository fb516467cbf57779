"""Notify hooks (keepalived-style ``--on-elected CMD``): shell commands run in order, in the background.

:func:`run_hook` runs one command through ``/bin/sh -c`` in a process group of its own, with
extra environment variables, its output captured (the last 4 KiB of each stream) and logged as
one ``hook_finished`` event, and the whole group SIGKILLed at the timeout. It never raises for a
failing hook. :class:`HookRunner` queues hooks and runs them one at a time, in submission order,
so that hooks of consecutive transitions never overtake each other, while the caller (the
daemon's revocation path) never waits for any of them. A hook may wait for something first
(``after``: a revocation's hooks wait until the command's process group is gone), and every
hook submitted after it waits too. :func:`transition_environment` is what a hook learns of its
transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from election_daemon.daemon.eventlog import EventLog
from election_daemon.errors import ConfigError
from election_daemon.library.events import Event
from election_daemon.library.transitions import Transition

__all__ = ["HookResult", "HookRunner", "previous_leader", "run_hook", "transition_environment"]

_OUTPUT_TAIL_BYTES = 4096
# After the timeout's SIGKILL: how long to wait for the shell's exit and end-of-output before
# giving up on them (a process that left the group may hold the pipes open).
_AFTER_KILL_S = 1.0


@dataclass(frozen=True, slots=True)
class HookResult:
    """How a hook ended."""

    name: str
    """The hook's name, as given (``elected``, ``revoked``, ...)."""

    exit_status: int | None
    """A shell's ``$?``: the exit code, or 128+N for signal N; ``None`` if the hook could not be
    started or did not end even after SIGKILL."""

    duration_s: float
    """From start to exit and end of output."""

    timed_out: bool
    """True if the hook was killed at its timeout."""

    stdout: str
    """The last 4 KiB of its standard output, decoded as UTF-8 with replacement characters."""

    stderr: str
    """The last 4 KiB of its standard error, likewise."""

    @property
    def ok(self) -> bool:
        """True if the hook exited with status 0 in time."""
        return self.exit_status == 0 and not self.timed_out


class _Tail:
    """The last bytes of a stream; survives the cancellation of the task that reads into it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.dropped = 0

    async def read_from(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.data += chunk
            excess = len(self.data) - _OUTPUT_TAIL_BYTES
            if excess > 0:
                del self.data[:excess]
                self.dropped += excess

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace")
        return f"[{self.dropped} bytes dropped]...{text}" if self.dropped else text


async def run_hook(
    command: str,
    *,
    env: Mapping[str, str],
    timeout_s: float,
    log: EventLog,
    name: str,
    environment: Mapping[str, str] | None = None,
) -> HookResult:
    """Run ``command`` with ``/bin/sh -c`` and ``env`` over the daemon's environment (or over
    ``environment`` if given).

    The hook is done when the shell has exited and its output is closed, so a background job
    that keeps the output open counts as part of it: redirect such jobs' output. At
    ``timeout_s`` the hook's whole process group is SIGKILLed. Cancelling the caller kills the
    group too.

    Logs ``hook_started``, ``hook_timeout`` (if killed) and ``hook_finished`` (with the output);
    never raises for a failing hook, nor for one that cannot be started (out of file
    descriptors or processes: ``hook_finished`` with ``exit_code`` null and the reason).
    """
    started = time.monotonic()
    base = os.environ if environment is None else environment
    try:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            env={**base, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the environment
        duration_s = time.monotonic() - started
        log.warning(Event.HOOK_FINISHED, name=name, exit_code=None, timed_out=False, reason=str(exc))
        return HookResult(name, None, duration_s, timed_out=False, stdout="", stderr="")
    pgid = process.pid  # it leads a new session
    log.info(Event.HOOK_STARTED, name=name, pid=process.pid, pgid=pgid, timeout_s=timeout_s)
    assert process.stdout is not None and process.stderr is not None  # both are PIPE
    stdout, stderr = _Tail(), _Tail()
    tasks = {
        asyncio.create_task(stdout.read_from(process.stdout)),
        asyncio.create_task(stderr.read_from(process.stderr)),
        asyncio.create_task(process.wait()),
    }
    timed_out = False
    try:
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        if pending:
            timed_out = True
            log.warning(Event.HOOK_TIMEOUT, name=name, pid=process.pid, pgid=pgid, timeout_s=timeout_s)
    finally:
        if not all(task.done() for task in tasks):  # timed out, or the caller was cancelled
            _kill_group(pgid)
            # Let the shell be reaped and the pipes reach end-of-file, so that nothing of the
            # hook outlives this call; bounded, since a process that left the group may hold them.
            await asyncio.wait(tasks, timeout=_AFTER_KILL_S)
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    returncode = process.returncode
    exit_status = None if returncode is None else (128 - returncode if returncode < 0 else returncode)
    result = HookResult(
        name=name,
        exit_status=exit_status,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        stdout=stdout.text(),
        stderr=stderr.text(),
    )
    (log.info if result.ok else log.warning)(
        "hook_finished",
        name=name,
        pid=process.pid,
        pgid=pgid,
        exit_code=result.exit_status,
        timed_out=timed_out,
        duration_s=round(result.duration_s, 6),
        stdout=result.stdout,
        stderr=result.stderr,
    )
    return result


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def transition_environment(transition: Transition) -> dict[str, str]:
    """The variables a hook gets for ``transition``, beside the term's ``ELECTION_*`` ones
    (one notify script can handle every transition, as keepalived's ``notify`` does)."""
    return {
        "ELECTION_EVENT": str(transition.event),
        "ELECTION_STATE": transition.state.value,
        "ELECTION_REASON": "" if transition.reason is None else str(transition.reason),
        "ELECTION_PREVIOUS_LEADER": previous_leader(transition),
    }


def previous_leader(transition: Transition) -> str:
    """The identity of the leader before this transition's term, if the election knows it
    (``elected`` names it from the published term it replaced); else ""."""
    return transition.previous_id or ""


@dataclass(frozen=True, slots=True)
class _Request:
    name: str
    command: str
    env: Mapping[str, str]
    after: Awaitable[object] | None


class HookRunner:
    """Runs submitted hooks one at a time, in submission order, in a background task.

    :param timeout_s: how long each hook may run before its process group is killed.
    :param log: a structlog-style logger for ``hook_*`` events.
    :param max_pending: hooks queued beyond this drop the oldest queued one (logged as
        ``hook_dropped``), so that a flapping election with a slow hook cannot grow memory
        without bound; the latest transitions' hooks are the ones kept.
    :param environment: what each hook's environment starts from (see :func:`run_hook`).
    :raises ConfigError: on a non-positive ``timeout_s`` or ``max_pending``.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        log: EventLog,
        max_pending: int = 100,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError("timeout_s", f"must be a positive number of seconds, got {timeout_s!r}")
        if max_pending < 1:
            raise ConfigError("max_pending", f"must be at least 1, got {max_pending!r}")
        self._timeout_s = float(timeout_s)
        self._log = log
        self._max_pending = max_pending
        self._environment = None if environment is None else dict(environment)
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._current: _Request | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Hooks submitted and not yet finished, the running one included."""
        return self._queue.qsize() + (self._current is not None)

    def submit(
        self, name: str, command: str, env: Mapping[str, str], *, after: Awaitable[object] | None = None
    ) -> None:
        """Queue ``command`` to run after every hook submitted before it; returns at once.

        With ``after``, the hook also waits for it to be done (its outcome does not matter), and
        so does every hook submitted later. Call it from the event loop's thread. Ignored (and
        logged) after :meth:`close`.
        """
        if self._closed:
            self._log.warning(Event.HOOK_DROPPED, name=name, reason="hook runner closed")
            return
        if self._queue.qsize() >= self._max_pending:
            dropped = self._queue.get_nowait()
            self._queue.task_done()
            self._log.warning(Event.HOOK_DROPPED, name=dropped.name, reason="too many hooks pending")
        self._queue.put_nowait(_Request(name, command, dict(env), after))
        if self._worker is None:
            self._worker = asyncio.create_task(self._work())

    async def join(self) -> None:
        """Wait until every hook submitted so far has finished."""
        await self._queue.join()

    async def close(self) -> None:
        """Run the hooks already submitted (each within its timeout), then stop; refuse new ones.

        Cancelling this call kills the running hook's group and drops the queued ones.
        """
        self._closed = True
        if self._worker is None:
            return
        try:
            await self._queue.join()
        finally:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _work(self) -> None:
        while True:
            request = self._current = await self._queue.get()
            try:
                if request.after is not None:
                    # asyncio.wait: cancelling this worker must not cancel what it waits for.
                    await asyncio.wait([asyncio.ensure_future(request.after)])
                await run_hook(
                    request.command,
                    env=request.env,
                    timeout_s=self._timeout_s,
                    log=self._log,
                    name=request.name,
                    environment=self._environment,
                )
            except Exception as exc:  # a bug in run_hook must not stop every later hook
                self._log.error(Event.HOOK_CRASHED, name=request.name, reason=repr(exc), exc_info=True)
            finally:
                self._current = None
                self._queue.task_done()
