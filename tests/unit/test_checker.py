"""The verify checker on hand-written histories: clean ones pass, each seeded violation is flagged."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from election_daemon.cli.verify._checker import CheckParams, Verdict, check
from election_daemon.cli.verify._history import History
from election_daemon.errors import ConfigError

T = 2.0
PARAMS = CheckParams(session_timeout_s=T, slack_s=2.0, kill_grace_s=T / 6)


class Story:
    """Builds a history the way the runner records one: daemons, commands, writes, faults."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = [
            {
                "t": 0.0,
                "source": "runner",
                "event": "params",
                "session_timeout_s": PARAMS.session_timeout_s,
                "slack_s": PARAMS.slack_s,
                "kill_grace_s": PARAMS.kill_grace_s,
            }
        ]
        self._seq = itertools.count(1)
        self._ops = itertools.count(1)
        self.accepted: list[str] = []

    @staticmethod
    def daemon_pid(process: str) -> int:
        return 100 + int(process[1:])

    def daemon(self, t: float, process: str, event: str, **fields: Any) -> None:
        self.records.append(
            {
                "t": t,
                "source": "daemon",
                "process": process,
                "daemon_pid": self.daemon_pid(process),
                "event": event,
                "session_id": f"0x{process}",
                "node": f"/v/{process}-n",
                **fields,
            }
        )

    def elected(self, t: float, process: str, token: int) -> None:
        self.daemon(t, process, "elected", state="leading", token=token)

    def revoked(self, t: float, process: str, token: int) -> None:
        self.daemon(t, process, "revoked", state="following", token=token, reason="lease_expired")

    def child(self, start: float, end: float | None, process: str, token: int, pid: int) -> None:
        self.daemon(start, process, "child_started", token=token, pid=pid, pgid=pid)
        if end is not None:
            self.daemon(end, process, "child_exited", token=token, pid=pid, pgid=pid, stopped_by_us=True)

    def write(
        self, t: float, process: str, pid: int, token: int, *, accepted: bool, acked: bool | None = None
    ) -> str:
        """One write: the register's record at ``t``, the writer's at ``t + 1 ms``."""
        op = f"{pid}-{next(self._ops)}"
        self.records.append(
            {
                "t": t,
                "source": "register",
                "event": "request",
                "seq": next(self._seq),
                "op": op,
                "writer": process,
                "token": token,
                "verdict": "accepted" if accepted else "rejected",
                "reason": "accepted" if accepted else "stale_token",
            }
        )
        ok = accepted if acked is None else acked
        self.records.append(
            {
                "t": t + 0.001,
                "source": "workload",
                "event": "write",
                "process": process,
                "daemon_pid": self.daemon_pid(process),
                "op": op,
                "writer": process,
                "token": token,
                "pid": pid,
                "invoke_s": t - 0.001,
                "result": "ok" if ok else "rejected",
            }
        )
        if accepted:
            self.accepted.append(op)
        return op

    def fault(self, fault_id: int, name: str, start: float, heal: float, target: str | None = None) -> None:
        common = {"source": "nemesis", "fault": name, "fault_id": fault_id, "target": target}
        self.records += [
            {"t": start, "event": "start", **common},
            {"t": heal, "event": "heal", **common},
            {"t": heal, "event": "healed", **common},
        ]

    def act(self, t: float, fault_id: int, action: str, node: str, *, disrupts: bool) -> None:
        """One act of a hostile client, as the nemesis logs it."""
        self.records.append(
            {
                "t": t,
                "source": "nemesis",
                "event": "act",
                "fault": "hostile",
                "fault_id": fault_id,
                "action": action,
                "node": node,
                "result": "done",
                "disrupts": disrupts,
            }
        )

    def killed(self, t: float, process: str, child_pid: int, gone: float) -> None:
        common = {"source": "fleet", "process": process, "daemon_pid": self.daemon_pid(process)}
        self.records += [
            {"t": t, "event": "daemon_killed", **common},
            {"t": gone, "event": "child_gone", "pid": child_pid, **common},
            {"t": t + 0.01, "event": "daemon_exited", "returncode": -9, **common},
        ]

    def history(self, *, end: float, lose: str | None = None) -> History:
        kept = [op for op in self.accepted if op != lose]
        final = {
            "t": end,
            "source": "register",
            "event": "final",
            "accepted": kept,
            "last": kept[-1] if kept else None,
        }
        return History([*self.records, final, {"t": end, "source": "runner", "event": "end"}])


def violation_kinds(verdict: Verdict, check_name: str) -> list[str]:
    return [violation.kind for violation in verdict.result(check_name).violations]


def clean_story() -> Story:
    """p1 leads and is killed; p2 leads and is paused; p3 takes over; p2's late write is rejected."""
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, None, "p1", 10, pid=201)
    s.write(1.1, "p1", 201, 10, accepted=True)
    s.write(1.2, "p1", 201, 10, accepted=True)
    s.fault(1, "kill", 3.0, 3.0, target="p1")
    s.killed(3.0, "p1", 201, gone=3.01)
    s.elected(5.2, "p2", 20)
    s.child(5.21, 10.05, "p2", 20, pid=202)
    s.write(5.3, "p2", 202, 20, accepted=True)
    s.fault(2, "pause", 7.0, 10.0, target="p2")
    s.elected(9.3, "p3", 30)
    s.child(9.31, None, "p3", 30, pid=203)
    s.write(9.4, "p3", 203, 30, accepted=True)
    s.write(10.01, "p2", 202, 20, accepted=False)
    s.revoked(10.02, "p2", 20)
    s.write(10.5, "p3", 203, 30, accepted=True)
    return s


def test_clean_history_passes_every_check() -> None:
    verdict = check(clean_story().history(end=12.0), PARAMS)

    assert verdict.ok, [v.message for v in verdict.violations]
    assert [term.token for term in verdict.terms] == [10, 20, 30]
    (overlap,) = verdict.overlaps
    assert (overlap.older.process, overlap.newer.process, overlap.cause, overlap.excused) == (
        "p2",
        "p3",
        "pause",
        True,
    )
    assert overlap.start == pytest.approx(9.31)
    assert overlap.end == pytest.approx(10.05)
    kill, pause = verdict.faults
    assert kill.failover_s == pytest.approx(2.21)
    assert (kill.token_before, kill.token_after) == (10, 20)
    assert pause.failover_s == pytest.approx(2.31)
    assert kill.recovery_s is not None
    assert kill.recovery_s == pytest.approx(2.21)
    assert pause.recovery_s == 0.0


def test_history_round_trips_through_json_lines(tmp_path: Path) -> None:
    history = clean_story().history(end=12.0)
    history.dump(tmp_path / "history.jsonl")

    loaded = History.load(tmp_path / "history.jsonl")

    assert loaded.records == history.records
    assert check(loaded, CheckParams.from_history(loaded)).ok


def test_two_leaders_with_accepted_writes_are_an_overlap() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 6.0, "p1", 10, pid=201)
    s.write(2.0, "p1", 201, 10, accepted=True)
    s.elected(3.0, "p2", 20)
    s.child(3.01, None, "p2", 20, pid=202)
    s.write(3.5, "p2", 202, 20, accepted=True)
    s.write(4.0, "p1", 201, 10, accepted=False)

    verdict = check(s.history(end=8.0), PARAMS)

    assert not verdict.ok
    assert violation_kinds(verdict, "containment") == ["overlap"]
    (overlap,) = verdict.overlaps
    assert overlap.cause == "unexplained"
    assert (overlap.start, overlap.end) == (3.01, 6.0)
    assert verdict.result("safety").ok


def test_stale_write_accepted_is_a_safety_violation() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 2.0, "p1", 10, pid=201)
    s.revoked(2.0, "p1", 10)
    s.elected(3.0, "p2", 20)
    s.child(3.01, None, "p2", 20, pid=202)
    s.write(3.5, "p2", 202, 20, accepted=True)
    s.write(3.6, "p1", 201, 10, accepted=True)

    verdict = check(s.history(end=5.0), PARAMS)

    assert "stale_write_accepted" in violation_kinds(verdict, "safety")


def test_acknowledged_write_lost_from_the_final_state() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, None, "p1", 10, pid=201)
    s.write(1.5, "p1", 201, 10, accepted=True)
    lost = s.write(1.6, "p1", 201, 10, accepted=True)
    s.write(1.7, "p1", 201, 10, accepted=True)

    verdict = check(s.history(end=3.0, lose=lost), PARAMS)

    # Lost both as the register logged it and as the writer was told.
    assert violation_kinds(verdict, "no_lost_writes") == [
        "acknowledged_write_lost",
        "acknowledged_write_lost",
    ]
    assert all(v.details["op"] == lost for v in verdict.result("no_lost_writes").violations)


def test_writer_told_ok_for_a_rejected_write() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, None, "p1", 10, pid=201)
    s.write(1.5, "p1", 201, 10, accepted=True)
    s.write(1.6, "p1", 201, 5, accepted=False, acked=True)

    verdict = check(s.history(end=3.0), PARAMS)

    assert violation_kinds(verdict, "no_lost_writes") == ["ack_mismatch"]


def test_missing_final_state_fails_the_lost_writes_check() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    history = History([r for r in s.history(end=2.0).records if r["event"] != "final"])

    assert violation_kinds(check(history, PARAMS), "no_lost_writes") == ["no_final_state"]


def test_no_leader_after_a_heal_is_a_liveness_violation() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 4.0, "p1", 10, pid=201)
    s.write(1.5, "p1", 201, 10, accepted=True)
    s.fault(1, "quorum-loss", 3.0, 5.0)
    s.revoked(3.9, "p1", 10)

    verdict = check(s.history(end=20.0), PARAMS)

    assert violation_kinds(verdict, "liveness") == ["no_leader_after_heal"]
    (fault,) = verdict.faults
    assert fault.recovery_s is None
    assert fault.disrupted


def test_a_leader_too_late_after_a_heal_is_a_liveness_violation() -> None:
    s = Story()
    s.fault(1, "cut", 3.0, 5.0, target="p1")
    s.elected(5.0 + PARAMS.liveness_bound_s + 1.0, "p2", 20)
    s.child(5.0 + PARAMS.liveness_bound_s + 1.01, None, "p2", 20, pid=202)

    verdict = check(s.history(end=20.0), PARAMS)

    assert violation_kinds(verdict, "liveness") == ["no_leader_after_heal"]


def test_commands_stopped_by_the_runs_shutdown_still_count_as_recovered() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 5.0, "p1", 10, pid=201)
    s.fault(1, "zk-isolate", 2.0, 4.0)
    s.records.append({"t": 4.9, "source": "runner", "event": "shutdown"})
    s.revoked(5.0, "p1", 10)

    verdict = check(s.history(end=6.0), PARAMS)

    assert verdict.ok, [v.message for v in verdict.violations]
    assert verdict.faults[0].recovery_s == 0.0


def test_a_daemon_that_exits_by_itself_is_a_liveness_violation() -> None:
    s = clean_story()
    s.records.append(
        {
            "t": 11.0,
            "source": "fleet",
            "event": "daemon_exited",
            "process": "p3",
            "daemon_pid": 103,
            "returncode": 1,
        }
    )

    verdict = check(s.history(end=12.0), PARAMS)

    assert violation_kinds(verdict, "liveness") == ["daemon_died"]


def test_token_granted_to_two_owners() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.revoked(2.0, "p1", 10)
    s.elected(3.0, "p2", 10)

    assert "token_reused" in violation_kinds(check(s.history(end=4.0), PARAMS), "safety")


def test_tokens_must_grow_in_the_order_terms_begin() -> None:
    s = Story()
    s.elected(1.0, "p1", 20)
    s.revoked(2.0, "p1", 20)
    s.elected(3.0, "p2", 10)

    assert violation_kinds(check(s.history(end=4.0), PARAMS), "safety") == ["token_order"]


def test_a_resumed_term_keeps_its_token() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.revoked(2.0, "p1", 10)
    s.daemon(2.5, "p1", "resumed", state="following")
    s.elected(3.0, "p1", 10)
    assert check(s.history(end=4.0), PARAMS).result("safety").ok

    s.revoked(4.0, "p1", 10)
    s.elected(5.0, "p1", 11)
    assert "resumed_with_new_token" in violation_kinds(check(s.history(end=6.0), PARAMS), "safety")


def test_write_from_a_process_that_does_not_own_the_token() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, None, "p2", 10, pid=202)
    s.write(1.5, "p2", 202, 10, accepted=True)

    assert "write_from_non_owner" in violation_kinds(check(s.history(end=3.0), PARAMS), "safety")


def test_pause_overlap_with_an_accepted_stale_write_is_not_excused() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 6.0, "p1", 10, pid=201)
    s.fault(1, "pause", 2.0, 5.0, target="p1")
    s.elected(4.3, "p2", 20)
    s.child(4.31, None, "p2", 20, pid=202)
    # p1 resumes at 5.0 and writes before p2 has written: the register cannot tell, but the
    # command ran on after the new term began.
    s.write(5.01, "p1", 201, 10, accepted=True)
    s.write(5.5, "p2", 202, 20, accepted=True)

    verdict = check(s.history(end=8.0), PARAMS)

    (overlap,) = verdict.overlaps
    assert (overlap.cause, overlap.excused) == ("pause", False)
    assert violation_kinds(verdict, "containment") == ["overlap"]


def test_brief_overlap_after_an_operator_deleted_the_node_is_excused() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 3.1, "p1", 10, pid=201)
    s.fault(1, "delete-node", 3.0, 3.0, target="p1")
    s.elected(3.02, "p2", 20)
    s.child(3.03, None, "p2", 20, pid=202)
    s.write(3.2, "p2", 202, 20, accepted=True)

    verdict = check(s.history(end=6.0), PARAMS)

    assert verdict.ok, [v.message for v in verdict.violations]
    (overlap,) = verdict.overlaps
    assert (overlap.cause, overlap.excused) == ("operator_deletion", True)


def test_overlaps_during_a_recursive_delete_of_the_path_are_excused() -> None:
    """Deleting the path takes rounds: terms begun during it are cut short by its next round."""
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 3.01, "p1", 10, pid=201)
    s.fault(1, "delete-path", 3.0, 3.1, target="/v")
    s.elected(3.02, "p2", 20)
    s.child(3.03, 3.06, "p2", 20, pid=202)
    s.elected(3.05, "p3", 30)
    s.child(3.055, None, "p3", 30, pid=203)

    verdict = check(s.history(end=6.0), PARAMS)

    assert verdict.ok, [v.message for v in verdict.violations]
    assert [o.cause for o in verdict.overlaps] == ["operator_deletion"]


def test_long_overlap_after_an_operator_deletion_is_a_violation() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 3.0 + PARAMS.kill_grace_s + PARAMS.slack_s + 1.0, "p1", 10, pid=201)
    s.fault(1, "delete-node", 3.0, 3.0, target="p1")
    s.elected(3.02, "p2", 20)
    s.child(3.03, None, "p2", 20, pid=202)

    assert violation_kinds(check(s.history(end=9.0), PARAMS), "containment") == ["overlap"]


@pytest.mark.parametrize(
    ("action", "cause"), [("delete_node", "operator_deletion"), ("step_down", "operator_step_down")]
)
def test_brief_overlap_after_a_hostile_client_ended_the_term_is_excused(action: str, cause: str) -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 3.1, "p1", 10, pid=201)
    s.fault(1, "hostile", 2.0, 4.0, target="/v")
    s.act(2.5, 1, "junk_node", "/v/p1-n", disrupts=False)
    s.act(3.0, 1, action, "/v/p1-n", disrupts=True)
    s.elected(3.02, "p2", 20)
    s.child(3.03, None, "p2", 20, pid=202)
    s.write(3.2, "p2", 202, 20, accepted=True)

    verdict = check(s.history(end=6.0), PARAMS)

    assert verdict.ok, [v.message for v in verdict.violations]
    (overlap,) = verdict.overlaps
    assert (overlap.cause, overlap.excused) == (cause, True)


@pytest.mark.parametrize(
    ("node", "action", "disrupts"),
    [
        ("/v/p3-n", "delete_node", True),  # another participant's node
        ("/v/p1-n", "junk_node", False),  # junk never ends a term
    ],
)
def test_an_overlap_a_hostile_client_did_not_cause_is_a_violation(
    node: str, action: str, disrupts: bool
) -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, 3.1, "p1", 10, pid=201)
    s.fault(1, "hostile", 2.0, 4.0, target="/v")
    s.act(3.0, 1, action, node, disrupts=disrupts)
    s.elected(3.02, "p2", 20)
    s.child(3.03, None, "p2", 20, pid=202)

    verdict = check(s.history(end=6.0), PARAMS)

    (overlap,) = verdict.overlaps
    assert (overlap.cause, overlap.excused) == ("unexplained", False)
    assert violation_kinds(verdict, "containment") == ["overlap"]


def test_a_fault_that_leaves_the_leader_in_place_has_no_failover() -> None:
    s = Story()
    s.elected(1.0, "p1", 10)
    s.child(1.01, None, "p1", 10, pid=201)
    s.fault(1, "slow", 2.0, 4.0, target="p1")

    verdict = check(s.history(end=6.0), PARAMS)

    assert verdict.ok
    (fault,) = verdict.faults
    assert (fault.disrupted, fault.failover_s, fault.recovery_s) == (False, None, 0.0)


@pytest.mark.parametrize(
    "record",
    [
        {"source": "daemon", "event": "elected"},
        {"t": "1", "source": "daemon", "event": "elected"},
        {"t": 1.0, "source": "elsewhere", "event": "elected"},
        {"t": 1.0, "source": "daemon"},
    ],
)
def test_history_refuses_malformed_records(record: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as error:
        History([record])
    assert error.value.field == "history"
