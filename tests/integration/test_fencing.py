"""Fencing: the SQLite fence's rule, the example leader-only command under two daemons, and the
in-ZooKeeper fence of ``Election.guarded_set``, all against real SQLite files, processes and ZooKeeper."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _daemons import REPO_ROOT, Daemons, daemon_environment, wait_until
from _waits import eventually
from kazoo.client import KazooClient

from election_daemon import Election, NotLeaderError
from election_daemon.errors import ConfigError
from election_daemon.fencing import (
    STALE_TOKEN,
    TOKEN_TAKEN,
    SQLiteFence,
    StaleTokenError,
    token_from_environment,
)
from election_daemon.library._zk import GuardFailedError
from election_daemon.testing import TcpProxy

EXAMPLE = REPO_ROOT / "examples" / "fenced_sqlite.py"
T = 2.0


@pytest.fixture
def fence(tmp_path: Path) -> Iterator[SQLiteFence]:
    with SQLiteFence(tmp_path / "fence.db") as opened:
        yield opened


# -- the fence's rule ----------------------------------------------------------------------


def test_fence_accepts_rising_tokens_and_refuses_lower_ones(fence: SQLiteFence) -> None:
    assert fence.accept(10, "a", "op1", b"one")
    assert fence.accept(10, "a", "op2", "two")
    assert fence.accept(20, "b", "op3")
    assert not fence.accept(10, "a", "op4")
    with pytest.raises(StaleTokenError) as stale:
        fence.write(19, "b", "op5")

    assert stale.value.reason == STALE_TOKEN
    assert stale.value.highest == (20, "b")
    assert isinstance(stale.value, NotLeaderError)
    assert fence.high_water_mark() == (20, "b")
    assert [(w.op_id, w.payload) for w in fence.writes()] == [("op1", b"one"), ("op2", b"two"), ("op3", b"")]


def test_an_equal_token_is_accepted_only_from_the_writer_that_used_it_first(fence: SQLiteFence) -> None:
    assert fence.accept(10, "a", "op1")
    with pytest.raises(StaleTokenError) as taken:
        fence.write(10, "b", "op2")
    assert taken.value.reason == TOKEN_TAKEN
    assert fence.accept(10, "a", "op3")


def test_every_request_is_recorded_with_its_receive_time_and_verdict(fence: SQLiteFence) -> None:
    fence.accept(10, "a", "op1")
    fence.accept(5, "b", "op2")
    fence.accept(11, "b", "op3")

    requests = fence.requests()

    assert [(r.seq, r.op_id, r.accepted, r.reason) for r in requests] == [
        (1, "op1", True, "accepted"),
        (2, "op2", False, "stale_token"),
        (3, "op3", True, "accepted"),
    ]
    times = [r.received_monotonic_s for r in requests]
    assert times == sorted(times)


def test_the_high_water_mark_survives_reopening(tmp_path: Path) -> None:
    with SQLiteFence(tmp_path / "fence.db") as first:
        first.accept(42, "a", "op1")
    with SQLiteFence(tmp_path / "fence.db") as second:
        assert second.high_water_mark() == (42, "a")
        assert not second.accept(41, "b", "op2")


def test_two_connections_to_one_file_share_the_fence(tmp_path: Path) -> None:
    with SQLiteFence(tmp_path / "fence.db") as a, SQLiteFence(tmp_path / "fence.db") as b:
        assert a.accept(10, "a", "op1")
        assert b.accept(20, "b", "op2")
        assert not a.accept(10, "a", "op3")


def test_fenced_block_commits_with_the_decision_or_not_at_all(fence: SQLiteFence) -> None:
    with fence.fenced(10, "a", "op1") as db:
        db.execute("CREATE TABLE things (name TEXT)")
        db.execute("INSERT INTO things VALUES ('kept')")
    with pytest.raises(RuntimeError), fence.fenced(11, "a", "op2") as db:
        db.execute("INSERT INTO things VALUES ('rolled back')")
        raise RuntimeError("the caller's own failure")
    with pytest.raises(StaleTokenError), fence.fenced(9, "a", "op3") as db:
        db.execute("INSERT INTO things VALUES ('never')")

    # The failed block left no trace, not even its request; the refused one is recorded.
    assert fence.high_water_mark() == (10, "a")
    assert [r.op_id for r in fence.requests()] == ["op1", "op3"]
    with sqlite3.connect(fence.path) as check:
        assert check.execute("SELECT name FROM things").fetchall() == [("kept",)]


@pytest.mark.parametrize(
    ("token", "field"), [(-1, "token"), (2**63, "token"), (True, "token"), ("7", "token")]
)
def test_fence_refuses_malformed_tokens(fence: SQLiteFence, token: object, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        fence.accept(token, "a", "op")  # type: ignore[arg-type]
    assert error.value.field == field


def test_token_from_environment() -> None:
    assert token_from_environment({"ELECTION_TOKEN": "4294967299"}) == 4294967299
    with pytest.raises(NotLeaderError):
        token_from_environment({})
    with pytest.raises(NotLeaderError):
        token_from_environment({"ELECTION_TOKEN": ""})
    with pytest.raises(ConfigError) as error:
        token_from_environment({"ELECTION_TOKEN": "zxid"})
    assert error.value.field == "ELECTION_TOKEN"


# -- the example under two daemons ------------------------------------------------------------


def _ledger(db: Path) -> list[tuple[int, str, int]]:
    """(token, writer, entry) of every row, in insertion order; empty before the table exists."""
    with sqlite3.connect(db) as connection:
        try:
            rows = connection.execute("SELECT token, writer, entry FROM ledger ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            rows = []
    connection.close()
    return [(int(token), str(writer), int(entry)) for token, writer, entry in rows]


@pytest.mark.timeout(60)
def test_after_a_failover_the_old_token_is_refused(zk_hosts: str, zk_path: str, tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    command = [sys.executable, str(EXAMPLE), str(db), "--interval", "0.05"]
    with Daemons() as daemons:
        a = daemons.start(
            zk_hosts, zk_path, identity="a", options=["--on-child-exit", "rejoin"], command=command
        )
        old_token = int(a.wait_for("elected")["token"])
        b = daemons.start(
            zk_hosts, zk_path, identity="b", options=["--on-child-exit", "rejoin"], command=command
        )
        b.wait_for("joined")
        wait_until(
            lambda: any(row[0] == old_token for row in _ledger(db)), timeout_s=10, what="a's first row"
        )

        a.terminate()
        assert a.wait() == 0
        new_token = int(b.wait_for("elected")["token"])
        wait_until(
            lambda: any(row[0] == new_token for row in _ledger(db)), timeout_s=10, what="b's first row"
        )

        # A zombie of a's term: the example, run with a's token after b has written.
        zombie = subprocess.run(
            [*command[:3], "--count", "1"],
            env=daemon_environment({"ELECTION_TOKEN": str(old_token), "ELECTION_ID": "a"}),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        with SQLiteFence(db) as fence:
            assert not fence.accept(old_token, "a", "late write")
            assert fence.high_water_mark() == (new_token, "b")

    assert new_token > old_token
    assert zombie.returncode == 75, zombie.stderr
    assert "below the fence's high-water mark" in zombie.stderr
    rows = _ledger(db)
    tokens = [token for token, _writer, _entry in rows]
    assert tokens == sorted(tokens)
    assert {writer for token, writer, _entry in rows if token == old_token} == {"a"}
    assert {writer for token, writer, _entry in rows if token == new_token} == {"b"}


def test_example_refuses_to_run_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in daemon_environment().items() if k != "ELECTION_TOKEN"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "ledger.db"), "--count", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "ELECTION_TOKEN is not set" in result.stderr
    assert not (tmp_path / "ledger.db").exists()


# -- the in-ZooKeeper fence ---------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_guarded_set_of_a_deposed_leader_is_refused_by_zookeeper(
    zk_hosts: str, zk_path: str, kazoo: KazooClient, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    data = f"{zk_path}-data"
    kazoo.create(data, b"", makepath=True)
    host, port = zk_hosts.split(",", maxsplit=1)[0].rsplit(":", 1)
    # a's link is slow, so that news of its node's deletion reaches it only after its next write.
    proxy = tcp_proxy(host, int(port))
    a = Election(proxy.address, zk_path, identity="a", session_timeout_s=4.0)
    b = Election(zk_hosts, zk_path, identity="b", session_timeout_s=4.0)
    try:
        await a.start()
        term_a = await a.wait_for_leadership(10)
        await b.start()
        await a.guarded_set(data, b"a1")
        assert kazoo.get(data)[0] == b"a1"

        proxy.set_latency(0.3)
        # An operator deletes a's node: b's term begins while a still believes it leads.
        kazoo.delete(term_a.node)
        assert a.is_leader
        with pytest.raises(NotLeaderError) as refused:
            await a.guarded_set(data, b"stale")
        assert isinstance(refused.value.__cause__, GuardFailedError), "refused by ZooKeeper, not locally"

        term_b = await b.wait_for_leadership(10)
        await b.guarded_set(data, b"b1")
        assert term_b.token > term_a.token
        await eventually(lambda: not a.is_leader, timeout_s=10, what="a to learn it was deposed")
        with pytest.raises(NotLeaderError):
            await a.guarded_set(data, b"stale again")
        assert kazoo.get(data)[0] == b"b1"
    finally:
        proxy.set_latency(0.0)
        await a.stop()
        await b.stop()
