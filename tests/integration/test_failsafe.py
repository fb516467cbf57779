"""Fail-safe: an exception at any step of the election's own work ends leadership at once.

Each step the loop calls is wrapped in turn so that it raises once, after the participant has
led; the same script then walks the participant through every step (a queue change while
leading, a resign and rejoin, a wait behind another leader, a takeover). Whatever the step,
leadership is revoked before the exception is reported, ``on_revoked`` balances
``on_elected``, the other participant can lead, and the failing one rejoins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _elections import Recorder, T, leaders, running
from _waits import eventually

from election_daemon import Election, ElectionState, InternalError, Transition
from election_daemon.library import candidacy as candidacy_module
from election_daemon.library import election as election_module
from election_daemon.library import priority as priority_module
from election_daemon.library import protocol as protocol_module

pytestmark = pytest.mark.timeout(60)


class Injected(Exception):
    """The fault the test injects."""


class Fatal(BaseException):
    """A fault no ``except Exception`` catches: it kills the loop's task outright."""


# (owner, attribute): every function the loop calls on its way through the recipe.
STEPS: list[tuple[Any, str]] = [
    (candidacy_module.Candidacy, "join"),
    (candidacy_module.Candidacy, "position"),
    (candidacy_module.Candidacy, "watch_predecessor"),
    (candidacy_module.Candidacy, "read_own"),
    (protocol_module, "read_handover"),
    (election_module.Election, "_defer_to_another"),
    (election_module.Election, "_take_office"),
    (election_module, "parse_contenders"),
    (priority_module.PriorityPolicy, "successor"),
    (protocol_module, "step_down_request"),
    (election_module.Election, "_set_following"),
    (election_module.Election, "_follow_session"),
]


class Fault:
    """Wraps one function so that it raises ``error`` on its next call by the victim, once armed."""

    def __init__(self, victim: Election, error: BaseException, *, times: int = 1) -> None:
        self.victim = victim
        self.error = error
        self.times = times
        self.armed = False
        self.fired: list[tuple[ElectionState, bool]] = []

    def wrap(self, original: Callable[..., Any], *, method: bool) -> Callable[..., Any]:
        fault = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The victim's own calls: made by its loop's task, or on the victim itself.
            mine = asyncio.current_task() is fault.victim._task or (method and args[0] is fault.victim)
            if fault.armed and mine and len(fault.fired) < fault.times:
                fault.fired.append((fault.victim.state, fault.victim.is_leader))
                raise fault.error
            return original(*args, **kwargs)

        return wrapper


@contextlib.contextmanager
def injected(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, fault: Fault) -> Iterator[Fault]:
    original = getattr(owner, name)
    method = isinstance(owner, type)
    monkeypatch.setattr(owner, name, fault.wrap(original, method=method))
    yield fault


def balanced(rec: Recorder, identity: str) -> bool:
    return len(rec.events(identity, "elected")) == len(rec.events(identity, "revoked"))


@pytest.mark.parametrize(("owner", "name"), STEPS, ids=[name for _, name in STEPS])
async def test_a_fault_at_any_step_revokes_and_the_election_goes_on(
    zk_hosts: str, zk_path: str, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str
) -> None:
    rec = Recorder()
    # Only a leader that weighs priorities reads the queue while leading.
    stable_s = 60.0 if name in ("parse_contenders", "successor") else None
    a = rec.attach(Election(zk_hosts, zk_path, identity="a", session_timeout_s=T, priority_stable_s=stable_s))
    b = rec.attach(Election(zk_hosts, zk_path, identity="b", session_timeout_s=T))
    at_error: list[tuple[bool, ElectionState]] = []

    def on_transition(t: Transition) -> None:
        if t.event == "internal_error":
            at_error.append((a.is_leader, a.state))

    a.add_listener(on_transition)
    fault = Fault(a, Injected(f"injected in {name}"))
    with injected(monkeypatch, owner, name, fault):
        async with running([a]):
            await a.wait_for_leadership(10)
            # Every step, in turn, until the fault fires: the path's data makes the takeover
            # read a handover; a second participant changes the queue under the leader.
            await a.session.zk.set(zk_path, b"not a handover")
            fault.armed = True
            if name == "_follow_session":
                from election_daemon.library.events import Reason
                from election_daemon.library.session import SessionChange, SessionState

                a._on_session_change(
                    SessionChange(
                        SessionState.CONNECTED,
                        SessionState.CONNECTED,
                        Reason.RECONNECTED,
                        a.session.session_id,
                    )
                )
            async with running([b]):
                await eventually(lambda: b.state is not ElectionState.JOINING, what="b joined")
                if not fault.fired and a.is_leader:
                    await a.resign()
                if not fault.fired:
                    await b.wait_for_leadership(10)
                    await b.resign()
                await eventually(lambda: bool(fault.fired), what=f"the fault in {name}")
                # Revoked before the fault was reported: never LEADING with a failing loop.
                assert at_error and at_error[0] == (False, ElectionState.JOINING)
                assert not rec.events("a", "elected") or rec.events("a", "revoked")
                assert rec.events("a", "internal_error")[0].error is fault.error
                # Someone leads again, and the failing participant is back in the queue.
                await eventually(lambda: len(leaders([a, b])) == 1, what="a leader again")
                await eventually(
                    lambda: a.state in (ElectionState.FOLLOWING, ElectionState.LEADING),
                    what="a rejoined",
                )
                assert len(leaders([a, b])) == 1
    assert balanced(rec, "a")
    revoked = [t.reason for t in rec.events("a", "revoked")]
    if fault.fired[0][1]:
        assert "internal_error" in revoked


async def test_repeated_faults_stop_the_election_with_a_clear_error(
    zk_hosts: str, zk_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder()
    a = rec.attach(Election(zk_hosts, zk_path, identity="a", session_timeout_s=T))
    b = rec.attach(Election(zk_hosts, zk_path, identity="b", session_timeout_s=T))
    fault = Fault(a, Injected("always"), times=1_000)
    ended: list[BaseException] = []

    async def consume() -> None:
        try:
            async for _ in a.changes():
                pass
        except InternalError as e:
            ended.append(e)

    with injected(monkeypatch, candidacy_module.Candidacy, "position", fault):
        async with running([a, b]):
            await a.wait_for_leadership(10)
            consumer = asyncio.ensure_future(consume())
            await asyncio.sleep(0)
            fault.armed = True
            await a.resign()  # rejoining reads the queue: the fault, again and again
            await b.wait_for_leadership(10)
            await eventually(lambda: a.state is ElectionState.STOPPED, what="a gave up")
            assert isinstance(a.failure, InternalError)
            assert rec.events("a", "failed")
            assert len(rec.events("a", "internal_error")) == 5
            with pytest.raises(InternalError):
                await a.wait_for_leadership(1)
            await eventually(lambda: bool(ended), what="changes() to end with the failure")
            await consumer
            with pytest.raises(InternalError):
                await a.stop()
            assert b.is_leader
    assert balanced(rec, "a")


async def test_a_loop_killed_outright_takes_leadership_with_it(
    zk_hosts: str, zk_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder()
    # A leader that weighs priorities reads the queue at its every change: the fault's site.
    a = rec.attach(Election(zk_hosts, zk_path, identity="a", session_timeout_s=T, priority_stable_s=60.0))
    b = rec.attach(Election(zk_hosts, zk_path, identity="b", session_timeout_s=T))
    fault = Fault(a, Fatal("beyond Exception"))
    with injected(monkeypatch, election_module, "parse_contenders", fault):
        async with running([a, b]):
            await a.wait_for_leadership(10)
            fault.armed = True
            await a.session.zk.ensure_path(f"{zk_path}/junk")
            await eventually(lambda: bool(fault.fired), what="the fault")
            await eventually(lambda: not a.is_leader, timeout_s=1, what="a revoked")
            assert rec.events("a", "revoked")[-1].reason == "internal_error"
            assert a.state is ElectionState.STOPPED
            assert isinstance(a.failure, InternalError)
            await b.wait_for_leadership(10)
            with pytest.raises(InternalError):
                await a.stop()
    assert balanced(rec, "a")
