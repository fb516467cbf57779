"""The daemon's side of the election's fail-safe contract, and spawning without file descriptors.

A scripted stand-in for :class:`Election` drives the daemon's real event handling, with a real
:class:`ChildSupervisor` running a real command: the library's contract (``internal_error``
transitions with the exception, a ``revoked`` with reason ``internal_error``, then ``failed``
with ``election.failure`` an :class:`InternalError` that ``stop()`` raises again) must end in
exit code 9 once the command's process group is gone.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from _processes import until
from structlog.testing import LogCapture

from election_daemon.daemon import service as daemon_module
from election_daemon.daemon.config import DaemonConfig
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.hooks import HookRunner
from election_daemon.daemon.service import Daemon
from election_daemon.daemon.supervisor import ChildSupervisor, process_group_alive
from election_daemon.errors import ElectionError, InternalError, NoAuthError
from election_daemon.library.election import ElectionState

pytestmark = pytest.mark.timeout(30)


@dataclass
class Term:
    token: int
    node: str


@dataclass
class FakeTransition:
    event: str
    state: ElectionState
    previous_state: ElectionState
    reason: str | None
    path: str
    token: int | None = None
    node: str | None = None
    error: BaseException | None = None
    previous_id: str | None = None
    timestamp: float = field(default_factory=time.time)

    def log_fields(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "state": self.state.value,
            "previous_state": self.previous_state.value,
            "reason": self.reason,
            "path": self.path,
            "node": self.node,
            "token": self.token,
        }


@dataclass
class FakeElection:
    """Just what the daemon uses, scripted by the test."""

    path: str
    identity: str
    state: ElectionState = ElectionState.IDLE
    term: Term | None = None
    node: str | None = "/svc/leader/n-0000000001"
    failure: Exception | None = None
    resigned: int = 0
    listeners: list[Callable[[Any], None]] = field(default_factory=list)
    elected: list[Callable[[Term], Any]] = field(default_factory=list)
    revoked: list[Callable[[str], Any]] = field(default_factory=list)
    negotiated_session_timeout_s: float | None = None

    @property
    def is_leader(self) -> bool:
        return self.term is not None

    @property
    def session(self) -> Any:
        raise ElectionError("not started")

    def add_listener(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def on_elected(self, callback: Callable[[Term], Any]) -> None:
        self.elected.append(callback)

    def on_revoked(self, callback: Callable[[str], Any]) -> None:
        self.revoked.append(callback)

    async def start(self) -> None:
        self.state = ElectionState.FOLLOWING

    async def stop(self) -> None:
        if self.failure is not None:
            raise self.failure
        await self.revoke("stopped")
        self.state = ElectionState.STOPPED

    async def resign(self) -> None:
        self.resigned += 1
        await self.revoke("resigned")
        self.state = ElectionState.FOLLOWING

    def emit(self, event: str, reason: str | None = None, error: BaseException | None = None) -> None:
        previous = self.state
        t = FakeTransition(event, self.state, previous, reason, self.path, error=error)
        for listener in self.listeners:
            listener(t)

    async def elect(self, token: int) -> None:
        self.term = Term(token=token, node=self.node or "")
        self.state = ElectionState.LEADING
        self.emit("elected")
        for callback in self.elected:
            # As the library's contract: a callback may be a plain function or return an awaitable.
            result = callback(self.term)
            if result is not None:
                await result

    async def revoke(self, reason: str) -> None:
        if self.term is None:
            return
        self.term = None
        self.state = ElectionState.FOLLOWING
        self.emit("revoked", reason)
        for callback in self.revoked:
            await callback(reason)


class NoMetrics:
    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.registry = None

    def command_started(self) -> None:
        pass

    def command_exited(self, *_args: Any, **_kwargs: Any) -> None:
        pass


class NoNotifier:
    watchdog_interval_s = None

    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_a, **_k: None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[FakeElection]:
    made: list[FakeElection] = []

    def election(_hosts: str, path: str, *, identity: str, **_kwargs: Any) -> FakeElection:
        made.append(FakeElection(path, identity))
        return made[-1]

    monkeypatch.setattr(daemon_module, "Election", election)
    monkeypatch.setattr(daemon_module, "ElectionMetrics", NoMetrics)
    return made


def make_daemon(log: Any, command: list[str] | None = None, **config: Any) -> Daemon:
    cfg = DaemonConfig(hosts="zk:2181", path="/svc/leader", identity="a", session_timeout_s=0.5, **config)
    supervisor = (
        ChildSupervisor(command, kill_grace_s=0.5, log=log, lifeline=None) if command is not None else None
    )
    return Daemon(
        cfg,
        log=log,
        notifier=NoNotifier(),  # type: ignore[arg-type]
        supervisor=supervisor,
        hooks=HookRunner(timeout_s=5, log=log),
    )


SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_election_failed_is_a_documented_exit_code() -> None:
    assert ExitCode.ELECTION_FAILED.value == 9
    assert "internal_error" in (ExitCode.ELECTION_FAILED.__doc__ or "")


async def test_internal_failure_stops_the_command_and_exits_9(
    fake: list[FakeElection], log: Any, capture: LogCapture, groups: list[int]
) -> None:
    daemon = make_daemon(log, SLEEPER)
    run = asyncio.create_task(daemon.run())
    await until(lambda: bool(fake) and fake[0].state is ElectionState.FOLLOWING, "joined")
    election = fake[0]
    await election.elect(7)
    assert daemon.supervisor is not None
    pid = daemon.supervisor.pid
    assert pid is not None
    groups.append(pid)
    assert daemon.supervisor.running
    # The library's contract: errors, a revocation for internal_error, then failed.
    for attempt in range(3):
        try:
            raise ValueError(f"hostile node {attempt}")
        except ValueError as e:
            election.emit("internal_error", "internal_error", error=e)
    await election.revoke("internal_error")
    failure = InternalError("the election loop failed 3 times")
    election.failure = failure
    election.state = ElectionState.STOPPED
    election.emit("failed", "internal_error")
    code = await asyncio.wait_for(run, 10)
    assert code == ExitCode.ELECTION_FAILED
    assert not process_group_alive(pid)
    assert daemon.failure == str(failure)
    errors = [e for e in capture.entries if e["event"] == "internal_error"]
    assert len(errors) == 3
    assert all(e["log_level"] == "error" for e in errors)
    assert isinstance(errors[0]["exc_info"], ValueError)
    events = [e["event"] for e in capture.entries]
    # The command was stopped because of the revocation; stop() raising again was expected.
    stopped = next(e for e in capture.entries if e["event"] == "child_stopped")
    assert stopped["reason"] == "internal_error"
    assert "stop_failed" not in events
    assert next(e for e in capture.entries if e["event"] == "failed")["log_level"] == "error"
    assert daemon.log_context()["session_id"] is None


async def test_a_failed_election_with_a_zookeeper_refusal_exits_4(fake: list[FakeElection], log: Any) -> None:
    daemon = make_daemon(log)
    run = asyncio.create_task(daemon.run())
    await until(lambda: bool(fake) and fake[0].state is ElectionState.FOLLOWING, "joined")
    election = fake[0]
    election.failure = NoAuthError("no permission on /svc/leader")
    election.emit("failed", "no_auth")
    assert await asyncio.wait_for(run, 10) == ExitCode.ZK_REFUSED


async def test_an_internal_error_at_start_exits_9(
    fake: list[FakeElection], log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(log)

    async def failing_start() -> None:
        raise InternalError("failed while joining")

    monkeypatch.setattr(fake[0], "start", failing_start)
    assert await asyncio.wait_for(daemon.run(), 10) == ExitCode.ELECTION_FAILED
    assert daemon.failure == "failed while joining"


async def test_out_of_file_descriptors_never_means_command_failed(
    fake: list[FakeElection], log: Any, capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(log, SLEEPER)
    run = asyncio.create_task(daemon.run())
    await until(lambda: bool(fake) and fake[0].state is ElectionState.FOLLOWING, "joined")
    election = fake[0]
    import subprocess

    def emfile(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(subprocess, "Popen", emfile)
    await election.elect(8)
    # Retried while leading, then leadership was given up; the daemon runs on.
    assert election.resigned == 1
    assert not run.done()
    events = [e["event"] for e in capture.entries]
    assert "child_start_retry" in events
    (failed,) = [e for e in capture.entries if e["event"] == "child_failed"]
    assert "Too many open files" in failed["reason"]
    assert "giving up leadership" in failed["reason"]
    daemon.request_exit(ExitCode.OK)
    assert await asyncio.wait_for(run, 10) == ExitCode.OK


async def test_spawn_recovers_when_descriptors_come_back(
    fake: list[FakeElection], log: Any, monkeypatch: pytest.MonkeyPatch, groups: list[int]
) -> None:
    daemon = make_daemon(log, SLEEPER)
    run = asyncio.create_task(daemon.run())
    await until(lambda: bool(fake) and fake[0].state is ElectionState.FOLLOWING, "joined")
    import subprocess

    real_popen = subprocess.Popen
    failures = iter([True, True])

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if next(failures, False):
            raise OSError(errno.ENFILE, os.strerror(errno.ENFILE))
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", flaky)
    await fake[0].elect(9)
    assert daemon.supervisor is not None and daemon.supervisor.running
    assert daemon.supervisor.pid is not None
    groups.append(daemon.supervisor.pid)
    assert fake[0].resigned == 0
    daemon.request_exit(ExitCode.OK)
    assert await asyncio.wait_for(run, 10) == ExitCode.OK


async def test_a_missing_program_is_still_command_failed(
    fake: list[FakeElection], log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(log, SLEEPER)
    run = asyncio.create_task(daemon.run())
    await until(lambda: bool(fake) and fake[0].state is ElectionState.FOLLOWING, "joined")
    import subprocess

    def enoent(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))

    monkeypatch.setattr(subprocess, "Popen", enoent)
    await fake[0].elect(10)
    assert await asyncio.wait_for(run, 10) == ExitCode.COMMAND_FAILED
