"""The demo's model, safety check and views, fed with log lines as the daemons write them."""

from __future__ import annotations

import io
import json
import os
import random
from typing import Any

import pytest
from rich.console import Console

from election_daemon.cli.demo.config import DemoConfig
from election_daemon.cli.demo.model import Cluster, Failover, FaultKind, Member, Summary, fault_plan
from election_daemon.cli.demo.view import LiveView, PlainView
from election_daemon.errors import ConfigError
from election_daemon.library.candidacy import Participant
from election_daemon.testing import SafetyCheck, parse_event, process_alive, process_group_alive, process_stat

pytestmark = pytest.mark.timeout(10)

PATH = "/demo/leader"


def line(event: str, **fields: Any) -> str:
    """A daemon's JSON log line: every schema key, as the daemon writes them."""
    doc: dict[str, Any] = {
        "state": None,
        "previous_state": None,
        "reason": None,
        "path": PATH,
        "id": None,
        "node": None,
        "token": None,
        "session_id": None,
        "event": event,
        "timestamp": "2026-01-01T00:00:00Z",
    }
    doc.update(fields)
    return json.dumps(doc)


def node(sequence: int) -> str:
    return f"{PATH}/_c_{'0' * 32}-{sequence:010d}"


def feed(cluster: Cluster, member_id: str, pid: int, *lines: str, at: float = 0.0) -> Member:
    member = next((m for m in cluster.members if m.pid == pid), None) or cluster.add(member_id, pid)
    for text in lines:
        record = parse_event(text, at)
        if record is None:
            cluster.output(member, text)
        else:
            cluster.record(member, record)
    return member


def lead(cluster: Cluster, member_id: str, pid: int, *, sequence: int, token: int, at: float = 0.0) -> Member:
    """Join, get elected and start the command: the lines of one term's beginning."""
    n = node(sequence)
    return feed(
        cluster,
        member_id,
        pid,
        line("joined", state="following", node=n),
        line("elected", state="leading", node=n, token=token),
        line("child_started", state="leading", node=n, token=token, pid=pid + 1000, pgid=pid + 1000),
        at=at,
    )


def never_alive(_pgid: int) -> bool:
    return False


def always_alive(_pgid: int) -> bool:
    return True


# -- log lines -------------------------------------------------------------------------


def test_parse_line_reads_log_records_and_leaves_the_commands_output() -> None:
    record = parse_event(line("elected", state="leading", node=node(3), token=42, monotonic_s=12.5), 99.0)
    assert record is not None
    assert (record.name, record.state, record.node, record.token, record.at_s) == (
        "elected",
        "leading",
        node(3),
        42,
        12.5,
    )
    assert parse_event("alpha leads, token 42: line 1", 1.0) is None
    assert parse_event('{"no": "event key"}', 1.0) is None
    assert parse_event("{not json", 1.0) is None


def test_parse_line_falls_back_to_the_time_it_was_read() -> None:
    record = parse_event(line("child_started", pid=7, pgid=7, token=True), 5.0)
    assert record is not None
    assert record.at_s == 5.0 and not record.has_own_time
    assert record.pgid == 7
    assert record.token is None  # a boolean is not a token


# -- the model -------------------------------------------------------------------------


def test_rows_follow_the_queue_and_name_each_predecessor() -> None:
    cluster = Cluster(SafetyCheck(never_alive))
    alpha = lead(cluster, "alpha", 100, sequence=0, token=10)
    bravo = feed(cluster, "bravo", 200, line("joined", state="following", node=node(1)))
    feed(cluster, "alpha", 100, "alpha leads, token 10: line 1")
    charlie = feed(cluster, "charlie", 300, line("starting", state="joining"))
    cluster.queue = [
        Participant("alpha", node(0), 10, 1, None, True),
        Participant("bravo", node(1), 11, 2, None, False),
    ]

    rows = cluster.rows()

    assert [(r.label, r.state, r.token, r.waits_on, r.leader) for r in rows] == [
        ("alpha", "leading", 10, None, True),
        ("bravo", "following", 11, "alpha", False),
        ("charlie", "joining", None, None, False),
    ]
    assert cluster.leader() is alpha
    assert alpha.output == "alpha leads, token 10: line 1"
    assert cluster.queued(bravo) and not cluster.queued(charlie)


def test_a_killed_leader_stays_in_the_queue_until_its_session_expires() -> None:
    cluster = Cluster(SafetyCheck(never_alive))
    alpha = lead(cluster, "alpha", 100, sequence=0, token=10)
    feed(cluster, "bravo", 200, line("joined", state="following", node=node(1)))
    cluster.queue = [
        Participant("alpha", node(0), 10, 1, None, True),
        Participant("bravo", node(1), 11, 2, None, False),
    ]
    alpha.fault = FaultKind.KILL
    cluster.process_ended(alpha, -9)

    rows = cluster.rows()

    assert [(r.label, r.state, r.waits_on, r.leader, r.gone) for r in rows] == [
        ("alpha", "killed (SIGKILL)", None, False, True),
        ("bravo", "following", "alpha", False, False),
    ]
    assert cluster.leader() is None
    assert cluster.problems() == []


def test_child_start_since_skips_the_old_leader_and_earlier_starts() -> None:
    cluster = Cluster(SafetyCheck(never_alive))
    alpha = lead(cluster, "alpha", 100, sequence=0, token=10, at=1.0)
    feed(cluster, "alpha", 100, line("revoked", state="stopped", token=10))
    bravo = lead(cluster, "bravo", 200, sequence=1, token=11, at=3.0)

    start = cluster.child_start_since(2.0, other_than=alpha)

    assert start is not None and start.member is bravo and start.token == 11
    assert cluster.child_start_since(4.0, other_than=alpha) is None


def test_unbidden_or_unclean_exits_are_problems() -> None:
    cluster = Cluster(SafetyCheck(never_alive))
    graceful = cluster.add("alpha", 100)
    graceful.fault = FaultKind.TERM
    cluster.process_ended(graceful, 0)
    killed = cluster.add("bravo", 200)
    killed.fault = FaultKind.KILL
    cluster.process_ended(killed, -9)
    assert cluster.problems() == []

    failed = cluster.add("charlie", 300)
    failed.fault = FaultKind.TERM
    cluster.process_ended(failed, 1)
    crashed = cluster.add("alpha", 400)
    cluster.process_ended(crashed, 4)

    assert cluster.problems() == [
        "charlie (pid 300) exited 1 after SIGTERM",
        "alpha (pid 400) exited 4 unbidden",
    ]


# -- the safety check ------------------------------------------------------------------


def test_a_term_closed_by_revoked_lets_the_next_one_start() -> None:
    cluster = Cluster(SafetyCheck(always_alive))
    lead(cluster, "alpha", 100, sequence=0, token=10)
    feed(cluster, "alpha", 100, line("revoked", state="stopped", token=10))
    lead(cluster, "bravo", 200, sequence=1, token=11)
    assert cluster.problems() == []


def test_overlapping_terms_are_a_violation() -> None:
    cluster = Cluster(SafetyCheck(always_alive))
    lead(cluster, "alpha", 100, sequence=0, token=10)
    lead(cluster, "bravo", 200, sequence=1, token=11)
    assert cluster.problems() == [
        "bravo started its command (token 11) while alpha's (token 10) was still running"
    ]


def test_a_killed_daemons_term_ends_only_when_its_command_is_gone() -> None:
    gone = Cluster(SafetyCheck(never_alive))
    alpha = lead(gone, "alpha", 100, sequence=0, token=10)
    gone.process_ended(alpha, -9)
    lead(gone, "bravo", 200, sequence=1, token=11)
    assert gone.safety.violations == []

    lingering = Cluster(SafetyCheck(always_alive))
    alpha = lead(lingering, "alpha", 100, sequence=0, token=10)
    lingering.process_ended(alpha, -9)
    lead(lingering, "bravo", 200, sequence=1, token=11)
    assert len(lingering.safety.violations) == 1


def test_a_token_that_does_not_grow_is_a_violation() -> None:
    cluster = Cluster(SafetyCheck(never_alive))
    lead(cluster, "alpha", 100, sequence=0, token=10)
    feed(cluster, "alpha", 100, line("child_exited", state="stopped", pid=1100, pgid=1100))
    lead(cluster, "bravo", 200, sequence=1, token=10)
    assert cluster.safety.violations == ["bravo started its command with token 10, not above the previous 10"]


def test_process_group_alive_sees_our_own_group() -> None:
    assert process_group_alive(os.getpgid(0))
    assert not process_group_alive(2**22 + 12345)  # above any pid Linux hands out by default


def test_process_stat_reads_our_own_process() -> None:
    stat = process_stat(os.getpid())
    assert stat is not None
    assert (stat.pid, stat.ppid, stat.pgrp, stat.alive) == (os.getpid(), os.getppid(), os.getpgid(0), True)
    assert process_alive(os.getpid())
    assert process_stat(2**22 + 12345) is None and not process_alive(2**22 + 12345)


# -- configuration and plan ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"faults": 0}, "--faults"),
        ({"session_timeout_s": 0.1}, "--session-timeout"),
        ({"session_timeout_s": float("nan")}, "--session-timeout"),
        ({"session_timeout_s": 60.0}, "--session-timeout"),
    ],
)
def test_demo_config_names_the_bad_option(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        DemoConfig(**kwargs)
    assert info.value.field == field


def test_failover_deadline_covers_a_session_expiry() -> None:
    assert DemoConfig(session_timeout_s=2.0).failover_deadline_s > 2.0


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_fault_plan_balances_stops_and_kills(count: int) -> None:
    plan = fault_plan(count, random.Random(count))
    assert len(plan) == count
    assert abs(plan.count(FaultKind.TERM) - plan.count(FaultKind.KILL)) <= 1
    assert plan == fault_plan(count, random.Random(count))  # the seed replays the run


# -- views -----------------------------------------------------------------------------


FAILOVERS = (
    Failover(1, FaultKind.TERM, "alpha", "bravo", 0.021, 11),
    Failover(2, FaultKind.KILL, "bravo", "charlie", 2.2, 12),
)


def test_summary_line_gives_durations_per_kind() -> None:
    summary = Summary(FAILOVERS, ())
    assert summary.ok and summary.tokens_increasing
    assert summary.line() == (
        "summary: 2 failovers; SIGTERM (graceful stop) x1: 0.021 s; SIGKILL (crash) x1: 2.200 s; "
        "tokens strictly increasing; no overlapping terms"
    )
    assert not Summary(FAILOVERS[::-1], ()).tokens_increasing
    assert not Summary(FAILOVERS, ("overlap",)).ok


async def test_plain_view_prints_one_line_per_failover_and_a_summary() -> None:
    out = io.StringIO()
    view = PlainView(out)
    view.open("election-daemon demo", ["3 daemons", "seed 1"])
    view.status("ignored")
    for f in FAILOVERS:
        view.failover(f, 2)
    await view.close()
    view.summary(Summary(FAILOVERS, ()))
    assert out.getvalue().splitlines() == [
        "election-daemon demo: 3 daemons; seed 1",
        "failover 1/2: SIGTERM alpha -> bravo in 0.021 s, token 11",
        "failover 2/2: SIGKILL bravo -> charlie in 2.200 s, token 12",
        Summary(FAILOVERS, ()).line(),
    ]


async def test_live_view_shows_the_queue_the_leader_and_the_failovers() -> None:
    cluster = Cluster(SafetyCheck(never_alive))
    lead(cluster, "alpha", 100, sequence=0, token=10)
    feed(cluster, "alpha", 100, "alpha leads, token 10: line 1")
    feed(cluster, "bravo", 200, line("joined", state="following", node=node(1)))
    cluster.queue = [
        Participant("alpha", node(0), 10, 1, None, True),
        Participant("bravo", node(1), 11, 2, None, False),
    ]
    cluster.failovers.extend(FAILOVERS)
    out = io.StringIO()
    view = LiveView(cluster, Console(file=out, width=100, force_terminal=True, color_system=None), 2)

    view.open("election-daemon demo", ["3 daemons"])
    view.status("waiting")
    await view.close()
    view.summary(Summary(FAILOVERS, ()))

    final = out.getvalue()
    assert "★ alpha" in final
    assert "alpha's leader-only command says: alpha leads, token 10: line 1" in final
    assert "bravo → charlie" in final
    assert "2.200 s" in final
    assert "summary: 2 failovers" in final


async def test_the_last_frame_after_everything_stopped_shows_no_leader() -> None:
    cluster = Cluster(SafetyCheck(never_alive))
    old_alpha = lead(cluster, "alpha", 100, sequence=0, token=10)
    old_alpha.fault = FaultKind.KILL
    cluster.process_ended(old_alpha, -9)
    bravo = lead(cluster, "bravo", 200, sequence=1, token=11)
    feed(cluster, "bravo", 200, "bravo leads, token 11: line 1")
    alpha = feed(cluster, "alpha", 300, line("joined", state="following", node=node(2)))
    # The end of the show: each daemon stopped, its node gone, as the observer's last read sees.
    for member, stopped in ((alpha, "stopped"), (bravo, "revoked")):
        member.fault = FaultKind.TERM
        feed(cluster, member.id, member.pid, line(stopped, state="stopped"))
        cluster.process_ended(member, 0)
    cluster.queue = []
    out = io.StringIO()
    view = LiveView(cluster, Console(file=out, width=100, force_terminal=True, color_system=None), 1)

    view.open("election-daemon demo", ["3 daemons"])
    view.status("stopping the daemons")
    await view.close()

    assert cluster.leader() is None
    # Each participant's last incarnation, and how it ended; the killed one is not repeated.
    assert [(r.label, r.pid, r.state, r.leader, r.gone) for r in cluster.rows()] == [
        ("bravo", 200, "exited 0", False, True),
        ("alpha", 300, "exited 0", False, True),
    ]
    final = out.getvalue().rsplit("participants, in queue order", 1)[1]
    assert "★" not in final and "leader-only command says" not in final
    assert "stopping the daemons" not in final
