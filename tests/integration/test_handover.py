"""Operator step-down, switchover to a named participant, and preferred (priority) leaders."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from _daemons import Daemons, LeaderChild
from _elections import Recorder, T, leaders, running
from _waits import eventually

from election_daemon import Election, ElectionState

ROOT = Path(__file__).resolve().parents[2]


async def step_down(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "election_daemon", "step-down", *args]
    return await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=60)


def elected_ids(rec: Recorder) -> list[str]:
    return [t.id for t in rec.transitions if t.event == "elected"]


async def test_step_down_hands_over_to_the_next(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    es = [rec.attach(Election(zk_hosts, zk_path, identity=f"p{i}", session_timeout_s=T)) for i in range(3)]
    async with running(es):
        first = await es[0].wait_for_leadership(10)
        result = await step_down("--hosts", zk_hosts, "--path", zk_path, "--wait", "10")
        assert result.returncode == 0, result.stderr
        assert "'p0'" in result.stdout and "'p1'" in result.stdout
        second = await es[1].wait_for_leadership(10)
        assert second.token > first.token
        assert rec.events("p0", "revoked")[0].reason == "step_down"
        await eventually(lambda: es[0].state is ElectionState.FOLLOWING, what="p0 rejoined")
        assert [p.id for p in await es[2].participants()] == ["p1", "p2", "p0"]


async def test_step_down_to_a_named_participant_skips_the_others(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    es = [rec.attach(Election(zk_hosts, zk_path, identity=f"p{i}", session_timeout_s=T)) for i in range(4)]
    async with running(es):
        await es[0].wait_for_leadership(10)
        result = await step_down("--hosts", zk_hosts, "--path", zk_path, "--to", "p3", "--wait", "10")
        assert result.returncode == 0, result.stderr
        await es[3].wait_for_leadership(10)
        # One failover, and nobody led in between.
        assert elected_ids(rec) == ["p0", "p3"]
        assert len(leaders(es)) == 1


async def test_step_down_errors_are_one_line(zk_hosts: str, zk_path: str) -> None:
    nobody = await step_down("--hosts", zk_hosts, "--path", zk_path, "--wait", "1")
    assert nobody.returncode == 8 and "nobody leads" in nobody.stderr
    assert "Traceback" not in nobody.stderr
    [e] = [Election(zk_hosts, zk_path, identity="solo", session_timeout_s=T)]
    async with running([e]):
        await e.wait_for_leadership(10)
        unknown = await step_down("--hosts", zk_hosts, "--path", zk_path, "--to", "ghost")
        assert unknown.returncode == 8 and "no participant 'ghost'" in unknown.stderr
        # Alone, the leader resigns and leads again at once, with a new term.
        alone = await step_down("--hosts", zk_hosts, "--path", zk_path, "--wait", "5")
        assert alone.returncode == 0, alone.stderr
        assert alone.stdout.count("'solo'") == 2 and alone.stderr == ""
    bad = await step_down("--hosts", "nohost:99999", "--path", zk_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


async def test_a_preferred_participant_takes_over_once_it_is_stable(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    low = rec.attach(Election(zk_hosts, zk_path, identity="low", session_timeout_s=T, priority_stable_s=0.5))
    high = rec.attach(Election(zk_hosts, zk_path, identity="high", session_timeout_s=T, priority=5))
    async with running([low]):
        first = await low.wait_for_leadership(10)
        async with running([high]):
            second = await high.wait_for_leadership(10)
            assert second.token > first.token
            assert rec.events("low", "revoked")[0].reason == "priority_handover"
            await eventually(lambda: low.state is ElectionState.FOLLOWING, what="low follows")
            assert elected_ids(rec) == ["low", "high"]


async def test_a_leader_without_priorities_hears_of_a_preferred_joiner_and_hands_over(
    zk_hosts: str, zk_path: str
) -> None:
    """A leader with no priority does not watch the queue; a joiner with a higher one tells it."""
    rec = Recorder()
    low = rec.attach(Election(zk_hosts, zk_path, identity="low", session_timeout_s=T))
    high = rec.attach(Election(zk_hosts, zk_path, identity="high", session_timeout_s=T, priority=5))
    async with running([low]):
        await low.wait_for_leadership(10)
        async with running([high]):
            await high.wait_for_leadership(4 * T + 10)
            assert rec.events("low", "revoked")[0].reason == "priority_handover"
            assert elected_ids(rec) == ["low", "high"]


async def test_a_flapping_preferred_participant_causes_no_handover(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    leader = rec.attach(
        Election(zk_hosts, zk_path, identity="steady", session_timeout_s=T, priority_stable_s=3.0)
    )
    async with running([leader]):
        await leader.wait_for_leadership(10)
        for i in range(3):  # comes and goes faster than the stability rule allows
            flapper = rec.attach(
                Election(zk_hosts, zk_path, identity=f"flap{i}", session_timeout_s=T, priority=9)
            )
            async with running([flapper]):
                await eventually(lambda: len(rec.events(f"flap{i}", "joined")) == 1, what="flapper joined")  # noqa: B023
        assert leader.is_leader
        assert elected_ids(rec) == ["steady"]


async def test_on_failover_the_highest_priority_leads_directly(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    es = [
        rec.attach(Election(zk_hosts, zk_path, identity="first", session_timeout_s=T, priority_stable_s=60)),
        rec.attach(
            Election(zk_hosts, zk_path, identity="next-in-line", session_timeout_s=T, priority_stable_s=60)
        ),
        rec.attach(Election(zk_hosts, zk_path, identity="preferred", session_timeout_s=T, priority=3)),
    ]
    async with running(es):
        await es[0].wait_for_leadership(10)
        await es[0].stop()
        await es[2].wait_for_leadership(10)
        assert elected_ids(rec) == ["first", "preferred"]
        assert any(t.event == "deferred" for t in rec.transitions if t.id == "next-in-line")


async def test_step_down_of_daemons_stops_the_child_and_starts_the_named_one(
    zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    with Daemons() as daemons:
        children = {name: LeaderChild(tmp_path / name) for name in ("a", "b", "c")}
        started = {}
        for name, child in children.items():  # in order: a leads, b then c queue behind it
            started[name] = daemons.start(zk_hosts, zk_path, identity=name, command=child.command())
            await asyncio.to_thread(started[name].wait_for, "joined")
        await asyncio.to_thread(children["a"].wait_started)
        result = await step_down("--hosts", zk_hosts, "--path", zk_path, "--to", "c", "--wait", "10")
        assert result.returncode == 0, result.stderr
        c_record = await asyncio.to_thread(children["c"].wait_started)
        a_record = children["a"].records()[0]
        assert a_record.stopped_monotonic is not None
        assert a_record.stopped_monotonic < c_record.started_monotonic
        assert int(c_record.env["ELECTION_TOKEN"]) > int(a_record.env["ELECTION_TOKEN"])
        assert children["b"].records() == []  # no intermediate leader
        revoked = started["a"].wait_for("revoked")
        assert revoked["reason"] == "step_down"
        assert started["a"].returncode is None  # a stepped-down daemon contends again
