"""Daemon processes for tests: run ``python -m election_daemon``, read its JSON log, signal it, clean up.

::

    with Daemons() as daemons:
        child = LeaderChild(tmp_path / "a")
        a = daemons.start(hosts, path, identity="a", command=child.command())
        elected = a.wait_for("elected")
        record = child.wait_started()
        a.terminate()
        assert a.wait() == 0

Each daemon runs in a process group of its own, with the environment of
:func:`election_daemon.testing.daemon_environment`: this repository first on ``PYTHONPATH`` and
none of the test runner's ``ELECTION_*`` (daemon settings, a term's variables) or systemd
variables. A thread reads its stdout: every line is kept, and log lines are also parsed into
:class:`LogEvent` (:func:`election_daemon.testing.parse_event`; the leader-only command shares
that stdout, so other lines are its output). :meth:`Daemons.close` SIGKILLs every daemon still
running and every process group its log says it started (children, hooks), whatever state the
test left them in.

Beside the standard library only :mod:`election_daemon.testing`: :mod:`_leader_child` imports
this module and should start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from election_daemon.testing import (
    DaemonEvent,
    daemon_args,
    daemon_argv,
    daemon_environment,
    parse_event,
    process_alive,
    process_group_alive,
    signal_group,
)

__all__ = [
    "REPO_ROOT",
    "ChildRecord",
    "DaemonProcess",
    "Daemons",
    "LeaderChild",
    "LogEvent",
    "NotifyMessage",
    "NotifySocket",
    "daemon_args",
    "daemon_environment",
    "group_alive",
    "process_alive",
    "run_daemon",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

_LEADER_CHILD = Path(__file__).with_name("_leader_child.py")
_POLL_S = 0.01
_TAIL_LINES = 40
_JOIN_S = 5.0

_T = TypeVar("_T")


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, what: str) -> float:
    """Poll ``predicate`` until it holds and return the ``time.monotonic()`` at which it did;
    fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = time.monotonic()
        if predicate():
            return now
        if now > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(_POLL_S)


group_alive = process_group_alive


def run_daemon(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run the daemon to completion (for runs that end by themselves: bad input, ``--help``)."""
    return subprocess.run(
        daemon_argv(args),
        env=daemon_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        start_new_session=True,
    )


LogEvent = DaemonEvent
"""One JSON log line of a daemon, with the ``time.monotonic()`` at which the test read it."""


class DaemonProcess:
    """One running ``python -m election_daemon ARGS``, in a process group of its own.

    :param args: the daemon's arguments (see :func:`daemon_args`).
    :param env: variables set over :func:`daemon_environment`.
    :param exec_prefix: argv run first, which must end by exec'ing the rest (so that the pid is
        the daemon's), e.g. ``["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"]``.
    :param name: how failure messages call it.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        exec_prefix: Sequence[str] = (),
        name: str = "daemon",
    ) -> None:
        self.name = name
        self.args = list(args)
        self._lines: list[str] = []
        self._events: list[LogEvent] = []
        self._stderr: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self.started_s = time.monotonic()
        self.process = subprocess.Popen(
            [*exec_prefix, *daemon_argv(self.args)],
            env=daemon_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, name=f"{name} stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"{name} stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def __repr__(self) -> str:
        return f"<DaemonProcess {self.name} pid={self.pid} returncode={self.process.poll()}>"

    # -- reading -------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            event = parse_event(line, time.monotonic())
            with self._changed:
                self._lines.append(line)
                if event is not None:
                    self._events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with self._changed:
                self._stderr.append(raw.decode("utf-8", "replace"))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pgid(self) -> int:
        """The daemon's process group: its pid (it leads a session of its own)."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, ``-N`` for signal N, or ``None`` while it runs."""
        return self.process.poll()

    @property
    def lines(self) -> list[str]:
        """Every stdout line so far: log lines and the leader-only command's output."""
        with self._changed:
            return list(self._lines)

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self._stderr)

    def events(self, name: str | None = None) -> list[LogEvent]:
        """The log events so far, in order; only those called ``name`` if given."""
        with self._changed:
            return [e for e in self._events if name is None or e.name == name]

    def mark(self) -> int:
        """The number of events so far: pass it as ``start`` to wait only for later ones."""
        with self._changed:
            return len(self._events)

    def wait_for(
        self,
        name: str,
        predicate: Callable[[LogEvent], bool] | None = None,
        *,
        timeout_s: float = 10.0,
        start: int = 0,
    ) -> LogEvent:
        """The first event called ``name`` (from index ``start``) that satisfies ``predicate``.

        Fails at ``timeout_s``, or as soon as the daemon's output ends without one.
        """

        def find() -> LogEvent | None:
            for event in self._events[start:]:
                if event.name == name and (predicate is None or predicate(event)):
                    return event
            return None

        return self._wait(find, timeout_s, f"event {name!r}")

    def wait_for_line(self, predicate: Callable[[str], bool], *, timeout_s: float = 10.0) -> str:
        """The first stdout line (log or not) that satisfies ``predicate``."""
        return self._wait(
            lambda: next((line for line in self._lines if predicate(line)), None), timeout_s, "a line"
        )

    def _wait(self, find: Callable[[], _T | None], timeout_s: float, what: str) -> _T:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = find()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._changed.wait(remaining)
        ended = "its output ended" if self._eof else f"{timeout_s:g} s"
        raise AssertionError(f"{self.name}: no {what} after {ended}\n{self.describe()}")

    def describe(self) -> str:
        """Pid, exit status, and the end of stdout and stderr: for failure messages."""
        tail = "\n".join(self.lines[-_TAIL_LINES:])
        return (
            f"{self.name} (pid {self.pid}, returncode {self.returncode}) stdout tail:\n{tail}\n"
            f"stderr:\n{self.stderr}"
        )

    # -- acting ----------------------------------------------------------------------------

    def send_signal(self, signum: int) -> None:
        """Signal the daemon process only (not its group)."""
        os.kill(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM the daemon, as a service manager stopping it would."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the daemon process only: its children are left to the daemon's own safeguards."""
        self.send_signal(signal.SIGKILL)

    def kill_group(self, signum: int = signal.SIGKILL) -> None:
        """Signal the daemon's whole process group."""
        signal_group(self.pgid, signal.Signals(signum))

    def wait(self, timeout_s: float = 10.0) -> int:
        """Wait for the daemon to exit; its exit code (``-N`` for signal N)."""
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout_s:g} s\n{self.describe()}"
            ) from None

    def started_groups(self) -> list[int]:
        """Every process group the log says the daemon started: leader-only commands and hooks."""
        return [
            e["pgid"] for e in self.events() if e.name in ("child_started", "hook_started") and "pgid" in e
        ]

    def close(self) -> None:
        """SIGKILL the daemon's group, then every group it started; reap; stop reading. Idempotent."""
        # Once reaped, the daemon's pid may belong to someone else: signal only an unreaped one.
        if self.process.poll() is None:
            self.kill_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(_JOIN_S)
        for pgid in self.started_groups():
            if group_alive(pgid):
                signal_group(pgid, signal.SIGKILL)
        for reader in self._readers:
            reader.join(_JOIN_S)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class Daemons:
    """Starts daemons and closes every one of them on :meth:`close` (or leaving the ``with``)."""

    def __init__(self) -> None:
        self._started: list[DaemonProcess] = []

    def start(
        self,
        hosts: str,
        path: str,
        *,
        identity: str | None = None,
        session_timeout_s: float = 2.0,
        options: Sequence[str] = (),
        command: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        exec_prefix: Sequence[str] = (),
    ) -> DaemonProcess:
        """Start one daemon; arguments as :func:`daemon_args` and :class:`DaemonProcess` take them."""
        args = daemon_args(
            hosts,
            path,
            identity=identity,
            session_timeout_s=session_timeout_s,
            options=options,
            command=command,
        )
        return self.start_args(args, env=env, exec_prefix=exec_prefix, name=identity or "daemon")

    def start_args(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        exec_prefix: Sequence[str] = (),
        name: str = "daemon",
    ) -> DaemonProcess:
        """Start one daemon with exactly ``args``."""
        daemon = DaemonProcess(args, env=env, exec_prefix=exec_prefix, name=name)
        self._started.append(daemon)
        return daemon

    def describe(self) -> str:
        """Every daemon's :meth:`DaemonProcess.describe`, for failure reports."""
        return "\n\n".join(daemon.describe() for daemon in self._started)

    def close(self) -> None:
        """Close every daemon started, even if closing one of them fails."""
        with contextlib.ExitStack() as closing:
            for daemon in self._started:
                closing.callback(daemon.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class ChildRecord:
    """What one run of :mod:`_leader_child` wrote about itself."""

    pid: int
    pgid: int
    started_monotonic: float
    env: dict[str, str]
    grandchild: int | None
    live_groups: list[int]
    """The watched process groups that still had a live member when it started."""
    stopped_monotonic: float | None
    """When it got SIGTERM, or ``None`` (not yet, killed, or ignoring SIGTERM)."""


class LeaderChild:
    """The test leader-only command (:mod:`_leader_child`), recording into ``state_dir``.

    :param ignore_term: ignore SIGTERM, so that only SIGKILL stops it.
    :param stop_delay_s: how long it takes to exit after SIGTERM, like a server draining.
    :param grandchild: fork a process that stays in its process group.
    :param watch_groups: record which of these process groups had a live member at its start.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        ignore_term: bool = False,
        stop_delay_s: float = 0.0,
        grandchild: bool = False,
        watch_groups: Sequence[int] = (),
    ) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._flags = [
            *(["--ignore-term"] if ignore_term else []),
            *([f"--stop-delay={stop_delay_s}"] if stop_delay_s else []),
            *(["--grandchild"] if grandchild else []),
            *(f"--watch-group={pgid}" for pgid in watch_groups),
        ]

    def command(self) -> list[str]:
        """The command line to give the daemon after ``--``."""
        return [sys.executable, str(_LEADER_CHILD), str(self.state_dir), *self._flags]

    def records(self) -> list[ChildRecord]:
        """Every run so far, in start order."""
        records = []
        for start in self.state_dir.glob("*.start.json"):
            fields = json.loads(start.read_text())
            stop = start.with_name(start.name.replace(".start.", ".stop."))
            stopped = json.loads(stop.read_text())["stopped_monotonic"] if stop.exists() else None
            records.append(ChildRecord(**fields, stopped_monotonic=stopped))
        return sorted(records, key=lambda r: r.started_monotonic)

    def wait_started(self, count: int = 1, *, timeout_s: float = 10.0) -> ChildRecord:
        """The ``count``-th run, once it has recorded its start."""
        wait_until(
            lambda: len(self.records()) >= count, timeout_s=timeout_s, what=f"child run {count} to start"
        )
        return self.records()[count - 1]

    def wait_stopped(self, count: int = 1, *, timeout_s: float = 10.0) -> ChildRecord:
        """The ``count``-th run, once it has recorded its SIGTERM."""

        def stopped() -> bool:
            records = self.records()
            return len(records) >= count and records[count - 1].stopped_monotonic is not None

        wait_until(stopped, timeout_s=timeout_s, what=f"child run {count} to record its stop")
        return self.records()[count - 1]


@dataclass(frozen=True, eq=False)
class NotifyMessage:
    """One sd_notify datagram: its assignments, and the sender's pid from its credentials.

    Compared by identity, so that ``messages.index(m)`` finds that very datagram.
    """

    fields: dict[str, str]
    pid: int
    received_s: float


_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


class NotifySocket:
    """systemd's end of the notify protocol: an AF_UNIX datagram socket at ``path``.

    Messages are read when a ``wait_for`` asks, so ``received_s`` is when the test read them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[NotifyMessage] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # The kernel then attaches the sender's credentials, as systemd asks it to.
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._socket.bind(str(path))

    @property
    def address(self) -> str:
        """The value for ``NOTIFY_SOCKET``."""
        return str(self.path)

    def _receive(self, timeout_s: float) -> bool:
        """Read one datagram, waiting up to ``timeout_s`` (positive); False if none came."""
        self._socket.settimeout(timeout_s)
        try:
            data, ancillary, _flags, _address = self._socket.recvmsg(65536, socket.CMSG_SPACE(_UCRED.size))
        except TimeoutError:
            return False
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _UCRED.unpack(payload[: _UCRED.size])[0]
        fields = dict(line.partition("=")[::2] for line in data.decode().splitlines() if line)
        self.messages.append(NotifyMessage(fields, pid, time.monotonic()))
        return True

    def wait_for(
        self,
        key: str,
        predicate: Callable[[str], bool] | None = None,
        *,
        timeout_s: float = 10.0,
        start: int = 0,
    ) -> NotifyMessage:
        """The first message (from index ``start``) assigning ``key`` a value that satisfies
        ``predicate``; fails after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for message in self.messages[start:]:
                if key in message.fields and (predicate is None or predicate(message.fields[key])):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = "\n".join(repr(m.fields) for m in self.messages[-_TAIL_LINES:])
                raise AssertionError(f"no {key}= notification after {timeout_s:g} s; got:\n{seen}")
            self._receive(remaining)

    def close(self) -> None:
        self._socket.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
