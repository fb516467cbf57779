"""Hostile data: a stranger with write access to the election path, against a real ZooKeeper.

Every case of issue 7's "Why", replayed with a real kazoo client and no credentials (the
path's ACL is open, as on a shared ensemble without ACLs). Each test asserts the outcome:
exactly one leader, the leader's command stopped before another starts, observers answer
with strict JSON, no traceback and no ``internal_error``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _daemons import Daemons, LeaderChild, daemon_environment, run_daemon
from _elections import Recorder, T, leaders, running
from _waits import eventually
from kazoo.client import KazooClient

from election_daemon import Election, ElectionError, ElectionState, Observer
from election_daemon.daemon.exitcodes import ExitCode

pytestmark = pytest.mark.timeout(60)

NESTED = b'{"id":"x","a":' + b"[" * 1500 + b"]" * 1500 + b"}"
"""About 3 KB of JSON nested 1,500 deep: Python's json module dies of RecursionError on it."""
HEX = "f" * 32


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with Daemons() as started:
        yield started
        print(started.describe())


def strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def status_json(hosts: str, path: str) -> Any:
    """``status --json`` as an operator runs it (without blocking this loop: leases run on it)."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "election_daemon", "status", "--hosts", hosts, "--path", path, "--json"),
        env=daemon_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert b"Traceback" not in err, err
    assert process.returncode == ExitCode.OK, err
    return strict_json(out.decode())


def make(hosts: str, path: str, rec: Recorder, *names: str) -> list[Election]:
    return [rec.attach(Election(hosts, path, identity=n, session_timeout_s=T)) for n in names]


def no_internal_errors(rec: Recorder) -> bool:
    return not [t for t in rec.transitions if t.event in ("internal_error", "failed")]


# -- the leader's node and the path's data ---------------------------------------------------


def test_nested_payload_then_delete_gives_one_leader_at_a_time(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path, kazoo: KazooClient
) -> None:
    a_child = LeaderChild(tmp_path / "a")
    a = daemons.start(zk_hosts, zk_path, identity="a", command=a_child.command())
    a_elected = a.wait_for("elected")
    a_record = a_child.wait_started()
    b_child = LeaderChild(tmp_path / "b", watch_groups=[a_record.pgid])
    b = daemons.start(zk_hosts, zk_path, identity="b", command=b_child.command())
    b.wait_for("joined")

    mark = a.mark()
    kazoo.set(a_elected["node"], NESTED)
    kazoo.delete(a_elected["node"])

    assert a.wait_for("revoked")["reason"] == "node_deleted"
    b_record = b_child.wait_started()
    assert b_record.live_groups == [], "b's command started while a's was running"
    a.wait_for("joined", start=mark)
    assert not a.events("internal_error") and not b.events("internal_error")
    assert a.returncode is None and b.returncode is None
    assert "Traceback" not in a.stderr + b.stderr
    status = asyncio.run(status_json(zk_hosts, zk_path))
    assert [p["id"] for p in status["participants"]] == ["b", "a"]


async def test_nested_payload_in_the_path_data_does_not_stop_a_handover(
    zk_hosts: str, zk_path: str, kazoo: KazooClient
) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, "a", "b")) as (a, b):
        await a.wait_for_leadership(10)
        kazoo.set(zk_path, NESTED)
        await a.resign()  # the next leader reads the path's data for a handover
        await b.wait_for_leadership(10)
        await b.resign()
        await a.wait_for_leadership(10)
        assert len(leaders([a, b])) == 1
    assert no_internal_errors(rec)


@pytest.mark.parametrize(
    "payload",
    [NESTED, b'{"id":"x","data":NaN}', b'{"id":"x","data":1e999}', b"\xff\xfe\x00", b"x" * 900_000],
    ids=["nested", "nan", "overflow", "not-utf8", "900KB"],
)
async def test_observers_answer_whatever_a_node_holds(
    zk_hosts: str, zk_path: str, kazoo: KazooClient, payload: bytes
) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, "a", "b")) as (a, b):
        await a.wait_for_leadership(10)
        node = b.node
        assert node is not None
        kazoo.set(node, payload)
        queue = await a.participants()
        assert [p.node for p in queue] == [a.node, node]
        assert queue[1].id is None and queue[1].data == payload
        async with Observer(zk_hosts, zk_path) as observer:
            snapshot = await observer.snapshot()
            assert snapshot.leader is not None and snapshot.leader.id == "a"
            strict_json(json.dumps(snapshot.as_dict(), allow_nan=False))
        status = await status_json(zk_hosts, zk_path)
        assert status["participants"][0]["id"] == "a"
        assert status["participants"][1]["id"] is None
        assert a.is_leader and not b.is_leader
    assert no_internal_errors(rec)


def test_daemon_refuses_data_that_would_break_its_readers(zk_hosts: str, zk_path: str) -> None:
    deep = "[" * 975 + "]" * 975
    for data in (deep, "1e999", "NaN", '{"a": Infinity}'):
        result = run_daemon(["--hosts", zk_hosts, "--path", zk_path, "--data", data])
        assert result.returncode == ExitCode.USAGE, (data, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


# -- look-alikes and forged names --------------------------------------------------------------


async def test_a_persistent_preferred_look_alike_causes_no_livelock(
    zk_hosts: str, zk_path: str, kazoo: KazooClient
) -> None:
    rec = Recorder()
    elections = [
        rec.attach(Election(zk_hosts, zk_path, identity=n, session_timeout_s=T, priority_stable_s=0))
        for n in ("a", "b", "c")
    ]
    async with running(elections) as es:
        await es[0].wait_for_leadership(10)
        kazoo.create(f"{zk_path}/_c_{HEX}_p5-0000000099", b'{"id":"fake"}')
        await es[1].session.zk.ensure_path(f"{zk_path}/poke")  # the leader re-reads the queue
        start = time.monotonic()
        while time.monotonic() - start < 3 * T:  # sampling, not waiting: one leader throughout
            assert len(leaders(es)) <= 1
            await asyncio.sleep(0.02)
        await eventually(lambda: len(leaders(es)) == 1, what="a leader")
        deferred = [t for t in rec.transitions if t.event == "deferred"]
        assert len(deferred) <= len(es), deferred
        queue = await es[0].participants()
        assert all(p.id != "fake" for p in queue)
    assert no_internal_errors(rec)


async def test_a_handover_to_a_persistent_node_is_not_obeyed(
    zk_hosts: str, zk_path: str, kazoo: KazooClient
) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, "a", "b")) as (a, b):
        await a.wait_for_leadership(10)
        fake = f"{zk_path}/_c_{HEX}-0000000099"
        kazoo.create(fake, b'{"id":"fake"}')
        kazoo.set(zk_path, json.dumps({"handover_to": fake, "request": "r"}).encode())
        await a.resign()
        await b.wait_for_leadership(10)
        assert not rec.events("b", "deferred")
        for bogus in (
            {"handover_to": f"{zk_path}/nobody-0000000001", "request": "r"},
            {"handover_to": "/elsewhere/_c_x-0000000001", "request": "r"},
            {"handover_to": 7, "request": "r"},
            {"handover_to": a.node, "request": "r" * 100},
        ):
            kazoo.set(zk_path, json.dumps(bogus).encode())
            await b.resign()
            await eventually(lambda: len(leaders([a, b])) == 1, what="a leader")
    assert no_internal_errors(rec)


async def test_a_forged_ephemeral_node_neither_leads_nor_displaces_the_leader(
    zk_hosts: str, zk_path: str, kazoo: KazooClient
) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, "a", "b")) as (a, b):
        first = await a.wait_for_leadership(10)
        forged = f"{zk_path}/_c_{HEX}-0000000000"
        kazoo.create(forged, b'{"id":"forged"}', ephemeral=True)
        await a.session.zk.ensure_path(f"{zk_path}/poke")
        queue = await b.participants()
        assert [p.id for p in queue] == ["a", "b"], "observers must not show the forged node"
        status = await status_json(zk_hosts, zk_path)
        assert status["participants"][0]["id"] == "a"
        assert a.is_leader and a.term == first
        await a.stop()
        # b's predecessor by name is the forged node, created after b's: b skips it and leads.
        second = await b.wait_for_leadership(10)
        assert second.token > first.token
        assert [p.id for p in await b.participants()] == ["b"]
    assert no_internal_errors(rec)


# -- the bound on transitions -------------------------------------------------------------------


async def test_deleting_nodes_and_asking_to_step_down_as_fast_as_possible_is_paced(
    zk_hosts: str, zk_path: str, kazoo: KazooClient
) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, "a", "b")) as es:
        await eventually(lambda: len(leaders(es)) == 1, what="a leader")
        attack_s = 4.0
        start = time.monotonic()
        writes = 0
        while time.monotonic() - start < attack_s:
            for child in kazoo.get_children(zk_path):
                node = f"{zk_path}/{child}"
                try:
                    if writes % 2:
                        kazoo.delete(node)
                    else:
                        kazoo.set(node, b'{"id":"x","step_down":{"request":"r"}}')
                except Exception:  # a node that went meanwhile
                    pass
                writes += 1
            await asyncio.sleep(0.005)
        # The bound: a burst of 5 moves, then one per T/2; each move is at most 4 transitions.
        moves_bound = 5 + attack_s / (T / 2) + 1
        for identity in ("a", "b"):
            transitions = [t for t in rec.transitions if t.id == identity]
            assert len(transitions) <= 4 * moves_bound + 6, (identity, len(transitions), writes)
        await eventually(lambda: len(leaders(es)) == 1, timeout_s=10, what="a leader after the attack")
    assert no_internal_errors(rec)


async def test_observer_and_election_after_stop_say_so(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    [a] = make(zk_hosts, zk_path, rec, "a")
    await a.start()
    await a.stop()
    assert a.state is ElectionState.STOPPED
    with pytest.raises(ElectionError, match="stopped"):
        await a.participants()
    with pytest.raises(ElectionError, match="stopped"):
        await a.leader()


# -- the fail-safe, as a daemon ---------------------------------------------------------------

FAULT_SITE = Path(__file__).parent / "_fault_site"


def faulty(step: str, arm: Path) -> dict[str, str]:
    """The environment of a daemon whose election raises at ``step`` while ``arm`` exists."""
    python_path = daemon_environment()["PYTHONPATH"]
    return {"PYTHONPATH": f"{FAULT_SITE}{os.pathsep}{python_path}", "ELECTION_TEST_FAULT": f"{step}:{arm}"}


def test_a_daemon_whose_loop_fails_stops_its_command_and_the_next_one_leads(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path, kazoo: KazooClient
) -> None:
    arm = tmp_path / "arm"
    a_child = LeaderChild(tmp_path / "a")
    # With a priority, the leader re-reads the queue at its every change: the fault's site.
    a = daemons.start(
        zk_hosts,
        zk_path,
        identity="a",
        options=["--priority", "1"],
        command=a_child.command(),
        env=faulty("parse_contenders", arm),
    )
    a.wait_for("elected")
    a_record = a_child.wait_started()
    b_child = LeaderChild(tmp_path / "b", watch_groups=[a_record.pgid])
    b = daemons.start(zk_hosts, zk_path, identity="b", command=b_child.command())
    b.wait_for("joined")

    arm.touch()
    kazoo.ensure_path(f"{zk_path}/poke")  # the leader re-reads the queue: the fault

    revoked = a.wait_for("revoked")
    assert revoked["reason"] == "internal_error"
    error = a.wait_for("internal_error")
    assert error["level"] == "error" and "InjectedFault" in json.dumps(error)
    assert error["token"] == revoked["token"]
    a.wait_for("child_stopped")
    assert b_child.wait_started().live_groups == [], "b's command started while a's was running"
    a.wait_for("joined", start=a.events().index(error))  # back in the queue, with a fresh node
    assert a.returncode is None


def test_a_daemon_whose_loop_keeps_failing_exits_9_after_its_command(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    arm = tmp_path / "arm"
    a_child = LeaderChild(tmp_path / "a")
    a = daemons.start(zk_hosts, zk_path, identity="a", command=a_child.command(), env=faulty("position", arm))
    a.wait_for("elected")
    a_child.wait_started()
    b = daemons.start(zk_hosts, zk_path, identity="b")
    b.wait_for("joined")
    arm.touch()
    # The takeover path reads the queue: resigning makes a fail on every attempt after.
    kazoo_free_step_down = run_daemon(["step-down", "--hosts", zk_hosts, "--path", zk_path, "--wait", "10"])
    assert kazoo_free_step_down.returncode == ExitCode.OK, kazoo_free_step_down.stderr
    assert a.wait(timeout_s=20) == ExitCode.ELECTION_FAILED
    assert len(a.events("internal_error")) == 5
    assert a.events("failed")
    assert a_child.wait_stopped().stopped_monotonic is not None
    assert b.wait_for("elected")
    assert "Traceback" not in a.stderr
