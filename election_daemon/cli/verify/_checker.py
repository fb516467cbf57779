"""The checker: a history in, verdicts out; pure, so tests can feed it histories with seeded violations.

Four checks, each with its own violations (reliability.md, section c):

- **safety**: the register never accepts a token below one it accepted, and its decisions
  follow its rule; every term has one token and one owner (a resumed term keeps its
  token); tokens increase in the order terms begin; accepted writes come from the token's
  owner, invoked after its term began.
- **containment**: two leader-only commands never run at once. An overlap is excused only
  when the older command's participant was paused, and then only if every write of the
  older command received after the newer term began was rejected; or when an operator
  deleted the leader's node (``delete-node``, ``delete-path``, or a ``hostile`` client's
  deletion or well-formed step-down request aimed at the older term's node), if it lasted
  no longer than the kill grace plus slack and no older write was accepted after the newer
  token's first. Every overlap is listed.
- **liveness**: after every fault heals, a leader-only command runs within T + slack; no
  daemon exits unless signalled.
- **no_lost_writes**: every write the register acknowledged, to the register's log or to
  the writer, is in the register's final state, and its final read is its last write.

Terms come from the daemons' ``elected``/``revoked`` lines (a SIGKILLed daemon's term ends
at the kill); commands run from ``child_started`` to ``child_exited``, or until a killed
daemon's command is seen gone. The register's records are the truth about writes.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from election_daemon.cli.verify._history import History, Record

__all__ = [
    "CHECKS",
    "CheckParams",
    "CheckResult",
    "ChildRun",
    "FaultOutcome",
    "Overlap",
    "Term",
    "Verdict",
    "Violation",
    "check",
]

CHECKS = ("safety", "containment", "liveness", "no_lost_writes")

# Timestamps of different processes come from one clock but are taken a few microseconds
# apart from the events they stamp.
_EPSILON_S = 1e-3
_OP_PID = re.compile(r"^(\d+)-\d+$")
_DELETION_FAULTS = frozenset({"delete-node", "delete-path"})
# Faults the leader must ride through on its lease: stopping its command is a violation.
_NO_BOUNCE_FAULTS = frozenset({"zk-rolling-restart"})
# A hostile client's acts that end a term by design: they excuse overlaps as an operator's do.
_OPERATOR_ACTS = {"delete_node": "operator_deletion", "step_down": "operator_step_down"}


@dataclass(frozen=True, slots=True)
class CheckParams:
    """What the bounds are made of."""

    session_timeout_s: float
    slack_s: float
    kill_grace_s: float

    @property
    def liveness_bound_s(self) -> float:
        """How long after a fault heals a leader-only command must run again."""
        return self.session_timeout_s + self.slack_s

    @classmethod
    def from_history(cls, history: History) -> CheckParams:
        """From the runner's ``params`` record."""
        params = history.first("runner", "params")
        if params is None:
            raise ValueError("the history has no runner params record")
        return cls(
            session_timeout_s=float(params["session_timeout_s"]),
            slack_s=float(params["slack_s"]),
            kill_grace_s=float(params["kill_grace_s"]),
        )


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    kind: str
    message: str
    t_start: float
    t_end: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "kind": self.kind,
            "message": self.message,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    violations: tuple[Violation, ...]
    metrics: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(slots=True)
class Term:
    """One term: a token, its owner, and the intervals it was held (more than one if resumed)."""

    token: int
    process: str
    daemon_pid: int
    session_id: str | None
    node: str | None
    intervals: list[tuple[float, float]]

    @property
    def begin(self) -> float:
        return self.intervals[0][0]

    @property
    def end(self) -> float:
        return self.intervals[-1][1]


@dataclass(frozen=True, slots=True)
class ChildRun:
    """One run of a leader-only command, from its start to its exit (or to its death being seen)."""

    process: str
    daemon_pid: int
    pid: int
    token: int | None
    start: float
    end: float
    end_reason: str
    """``exited``, ``gone`` (seen dead after its daemon was killed) or ``end_of_history``."""


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two commands running at once: ``older`` holds the lower token."""

    older: ChildRun
    newer: ChildRun
    start: float
    end: float
    cause: str
    """``pause``, ``operator_deletion``, ``operator_step_down``, or ``unexplained``."""
    excused: bool
    detail: str

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    fault_id: int
    name: str
    target: str | None
    start: float
    heal: float
    healed: float
    disrupted: bool
    """Whether the command running when the fault began stopped before the next fault."""
    failover_s: float | None
    """From the fault's start to the next command's start, if it disrupted the leader."""
    recovery_s: float | None
    """From healed to a command running (0 if one was); None if none ran again."""
    token_before: int | None
    token_after: int | None


@dataclass(frozen=True, slots=True)
class Verdict:
    checks: tuple[CheckResult, ...]
    terms: tuple[Term, ...]
    child_runs: tuple[ChildRun, ...]
    overlaps: tuple[Overlap, ...]
    faults: tuple[FaultOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks)

    @property
    def violations(self) -> list[Violation]:
        return [violation for result in self.checks for violation in result.violations]

    def result(self, name: str) -> CheckResult:
        return next(result for result in self.checks if result.name == name)


def check(history: History, params: CheckParams) -> Verdict:
    """Run every check on ``history``."""
    terms = _terms(history)
    runs = _child_runs(history)
    requests = history.select("register", "request")
    ops = _op_runs(history, runs)
    faults = _faults(history)
    nodes = {term.token: term.node for term in terms}
    overlaps = _overlaps(runs, _Evidence(_term_begins(terms), nodes, requests, ops, faults, params))
    # The run's own shutdown stops every command: observation ends there.
    shutdown = history.first("runner", "shutdown")
    observed_until = float(shutdown["t"]) if shutdown is not None else history.end
    outcomes = _fault_outcomes(faults, runs, observed_until, params)
    checks = (
        _check_safety(history, terms, requests),
        _check_containment(overlaps, params),
        _check_liveness(history, outcomes, params),
        _check_no_lost_writes(history, requests),
    )
    return Verdict(
        checks=checks,
        terms=tuple(terms),
        child_runs=tuple(runs),
        overlaps=tuple(overlaps),
        faults=tuple(outcomes),
    )


# -- deriving terms, runs and faults ---------------------------------------------------------


def _incarnation(record: Record) -> tuple[str, int]:
    return str(record.get("process")), int(record.get("daemon_pid") or 0)


def _deaths(history: History) -> dict[tuple[str, int], float]:
    """When each daemon incarnation stopped acting: SIGKILL sent, or exit seen, whichever first."""
    deaths: dict[tuple[str, int], float] = {}
    for record in history.select("fleet", "daemon_killed", "daemon_exited"):
        key = _incarnation(record)
        deaths.setdefault(key, float(record["t"]))
    return deaths


def _terms(history: History) -> list[Term]:
    """Every term, in the order they began; a token with two owners gives two terms."""
    terms: dict[tuple[int, str, int], Term] = {}
    open_terms: dict[tuple[str, int], tuple[tuple[int, str, int], float]] = {}

    def close(key: tuple[str, int], t: float) -> None:
        term_key, start = open_terms.pop(key)
        terms[term_key].intervals.append((start, t))

    deaths = _deaths(history)
    for record in history.select("daemon", "elected", "revoked"):
        key = _incarnation(record)
        t = float(record["t"])
        if key in deaths and t > deaths[key]:
            continue
        if record["event"] == "elected" and record.get("token") is not None:
            if key in open_terms:
                close(key, t)
            term_key = (int(record["token"]), *key)
            if term_key not in terms:
                terms[term_key] = Term(
                    token=term_key[0],
                    process=key[0],
                    daemon_pid=key[1],
                    session_id=record.get("session_id"),
                    node=record.get("node"),
                    intervals=[],
                )
            open_terms[key] = (term_key, t)
        elif record["event"] == "revoked" and key in open_terms:
            close(key, t)
    for key in list(open_terms):
        close(key, deaths.get(key, history.end))
    return sorted((term for term in terms.values() if term.intervals), key=lambda term: term.begin)


def _term_begins(terms: Iterable[Term]) -> dict[int, float]:
    """When each token's term first began."""
    begins: dict[int, float] = {}
    for term in terms:
        begins[term.token] = min(begins.get(term.token, term.begin), term.begin)
    return begins


def _child_runs(history: History) -> list[ChildRun]:
    starts: dict[int, Record] = {}
    ends: dict[int, tuple[float, str]] = {}
    for record in history.records:
        source, event = record["source"], record["event"]
        if source == "daemon" and event == "child_started" and record.get("pid") is not None:
            starts.setdefault(int(record["pid"]), record)
        elif (source, event) in (("daemon", "child_exited"), ("fleet", "child_gone")):
            pid = record.get("pid")
            if pid is not None:
                reason = "exited" if event == "child_exited" else "gone"
                ends.setdefault(int(pid), (float(record["t"]), reason))
    runs = []
    for pid, start in starts.items():
        process, daemon_pid = _incarnation(start)
        end, reason = ends.get(pid, (history.end, "end_of_history"))
        token = start.get("token")
        runs.append(
            ChildRun(
                process=process,
                daemon_pid=daemon_pid,
                pid=pid,
                token=int(token) if token is not None else None,
                start=float(start["t"]),
                end=max(end, float(start["t"])),
                end_reason=reason,
            )
        )
    return sorted(runs, key=lambda run: run.start)


def _op_runs(history: History, runs: list[ChildRun]) -> dict[str, ChildRun]:
    """Which command run sent each op: from the workload's lines, else the op id (``<pid>-<n>``)."""
    by_pid = {run.pid: run for run in runs}
    ops: dict[str, ChildRun] = {}
    for record in history.select("workload", "write"):
        run = by_pid.get(int(record.get("pid") or 0))
        if run is not None:
            ops[str(record["op"])] = run
    for record in history.select("register", "request"):
        op = str(record.get("op"))
        match = _OP_PID.match(op)
        if op not in ops and match is not None and int(match.group(1)) in by_pid:
            ops[op] = by_pid[int(match.group(1))]
    return ops


@dataclass(frozen=True, slots=True)
class _Act:
    """A fault's act that ends a term by design: which, when, on which node."""

    t: float
    action: str
    node: str | None


@dataclass(frozen=True, slots=True)
class _Fault:
    fault_id: int
    name: str
    target: str | None
    start: float
    heal: float
    healed: float
    acts: tuple[_Act, ...] = ()


def _faults(history: History) -> list[_Fault]:
    starts: dict[int, Record] = {}
    heals: dict[int, float] = {}
    healed: dict[int, float] = {}
    acts: dict[int, list[_Act]] = defaultdict(list)
    for record in history.select("nemesis"):
        fault_id = int(record.get("fault_id") or 0)
        if record["event"] == "start":
            starts[fault_id] = record
        elif record["event"] == "heal":
            heals[fault_id] = float(record["t"])
        elif record["event"] == "healed":
            healed[fault_id] = float(record["t"])
        elif record["event"] == "act" and record.get("disrupts") and record.get("action") in _OPERATOR_ACTS:
            node = record.get("node")
            acts[fault_id].append(
                _Act(float(record["t"]), str(record["action"]), None if node is None else str(node))
            )
    faults = []
    for fault_id, start in starts.items():
        t = float(start["t"])
        heal = heals.get(fault_id, t)
        target = start.get("target")
        faults.append(
            _Fault(
                fault_id=fault_id,
                name=str(start.get("fault")),
                target=None if target is None else str(target),
                start=t,
                heal=heal,
                healed=healed.get(fault_id, heal),
                acts=tuple(acts[fault_id]),
            )
        )
    return sorted(faults, key=lambda fault: fault.start)


# -- safety ------------------------------------------------------------------------------------


def _check_safety(history: History, terms: list[Term], requests: list[Record]) -> CheckResult:
    violations: list[Violation] = []
    owners: dict[int, list[Term]] = defaultdict(list)
    for term in terms:
        owners[term.token].append(term)
    for token, holders in owners.items():
        if len(holders) > 1:
            names = ", ".join(f"{t.process} (pid {t.daemon_pid}, session {t.session_id})" for t in holders)
            violations.append(
                Violation(
                    "safety",
                    "token_reused",
                    f"token {token} was granted to more than one owner: {names}",
                    min(t.begin for t in holders),
                    max(t.end for t in holders),
                    {"token": token, "owners": [t.process for t in holders]},
                )
            )
    violations += _resumed_with_new_token(history)
    # A resumed term counts once, where it first began.
    ordered = sorted(_term_begins(terms).items(), key=lambda item: item[1])
    processes = {term.token: term.process for term in terms}
    for (earlier, earlier_begin), (later, later_begin) in itertools.pairwise(ordered):
        if later <= earlier:
            violations.append(
                Violation(
                    "safety",
                    "token_order",
                    f"term {later} of {processes[later]} began after term {earlier} of "
                    f"{processes[earlier]}, with a token that is not larger",
                    earlier_begin,
                    later_begin,
                    {"earlier": earlier, "later": later},
                )
            )
    violations += _register_violations(terms, requests)
    violations += _writes_before_grant(history, terms)
    accepted = sum(1 for r in requests if r.get("verdict") == "accepted")
    return CheckResult(
        "safety",
        tuple(violations),
        {
            "terms": len(terms),
            "register_requests": len(requests),
            "accepted": accepted,
            "rejected": len(requests) - accepted,
        },
    )


def _resumed_with_new_token(history: History) -> list[Violation]:
    """A term that resumes on the same node and session must keep its token."""
    violations = []
    last: dict[tuple[str, int], tuple[str | None, str | None, int]] = {}
    for record in history.select("daemon", "elected", "joined", "session_lost", "node_lost"):
        key = _incarnation(record)
        if record["event"] != "elected":
            last.pop(key, None)
            continue
        if record.get("token") is None:
            continue
        token = int(record["token"])
        node, session = record.get("node"), record.get("session_id")
        previous = last.get(key)
        if previous is not None and previous[:2] == (node, session) and previous[2] != token:
            violations.append(
                Violation(
                    "safety",
                    "resumed_with_new_token",
                    f"{key[0]} resumed on node {node} with token {token}, not its term's {previous[2]}",
                    float(record["t"]),
                    float(record["t"]),
                    {"process": key[0], "node": node, "tokens": [previous[2], token]},
                )
            )
        last[key] = (node, session, token)
    return violations


def _register_violations(terms: list[Term], requests: list[Record]) -> list[Violation]:
    """Replay the register's decisions by its rule, and check each accepted write's owner."""
    violations = []
    owners: dict[int, set[str]] = defaultdict(set)
    for term in terms:
        owners[term.token].add(term.process)
    highest: tuple[int, str] | None = None
    for request in sorted(requests, key=lambda r: int(r.get("seq") or 0)):
        token, writer = int(request["token"]), str(request.get("writer"))
        t = float(request["t"])
        acceptable = highest is None or token > highest[0] or (token == highest[0] and writer == highest[1])
        accepted = request.get("verdict") == "accepted"
        if accepted and not acceptable:
            assert highest is not None
            violations.append(
                Violation(
                    "safety",
                    "stale_write_accepted",
                    f"the register accepted op {request.get('op')} with token {token} from {writer} "
                    f"after accepting token {highest[0]} from {highest[1]}",
                    t,
                    t,
                    {"op": request.get("op"), "token": token, "highest": highest[0]},
                )
            )
        elif acceptable and not accepted:
            violations.append(
                Violation(
                    "safety",
                    "register_inconsistent",
                    f"the register rejected op {request.get('op')} with token {token} from {writer}, "
                    "which its rule accepts",
                    t,
                    t,
                    {"op": request.get("op"), "token": token},
                )
            )
        if accepted:
            if highest is None or token > highest[0]:
                highest = (token, writer)
            if token not in owners:
                violations.append(
                    Violation(
                        "safety",
                        "unknown_token",
                        f"the register accepted op {request.get('op')} with token {token}, "
                        "which no daemon logged as elected",
                        t,
                        t,
                        {"op": request.get("op"), "token": token},
                    )
                )
            elif writer not in owners[token]:
                violations.append(
                    Violation(
                        "safety",
                        "write_from_non_owner",
                        f"the register accepted op {request.get('op')} with token {token} from "
                        f"{writer}, but {', '.join(sorted(owners[token]))} owns it",
                        t,
                        t,
                        {"op": request.get("op"), "token": token, "owners": sorted(owners[token])},
                    )
                )
    return violations


def _writes_before_grant(history: History, terms: list[Term]) -> list[Violation]:
    begins = _term_begins(terms)
    violations = []
    for record in history.select("workload", "write"):
        token, invoked = record.get("token"), record.get("invoke_s")
        if token is None or invoked is None or int(token) not in begins:
            continue
        if float(invoked) < begins[int(token)] - _EPSILON_S:
            violations.append(
                Violation(
                    "safety",
                    "write_before_grant",
                    f"op {record.get('op')} with token {token} was invoked before its term began",
                    float(invoked),
                    begins[int(token)],
                    {"op": record.get("op"), "token": token},
                )
            )
    return violations


# -- containment -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What explains an overlap: when terms began, the register's records, who sent them, faults."""

    begins: dict[int, float]
    nodes: Mapping[int, str | None]
    """Each token's node, as its owner logged it."""
    requests: list[Record]
    ops: Mapping[str, ChildRun]
    faults: list[_Fault]
    params: CheckParams


def _overlaps(runs: list[ChildRun], evidence: _Evidence) -> list[Overlap]:
    overlaps = []
    for index, first in enumerate(runs):
        for second in runs[index + 1 :]:
            if second.start >= first.end:
                break
            start, end = max(first.start, second.start), min(first.end, second.end)
            if end - start <= 0:
                continue
            older, newer = sorted((first, second), key=lambda run: (run.token or 0, run.start))
            overlaps.append(_explain(older, newer, start, end, evidence))
    return overlaps


def _explain(older: ChildRun, newer: ChildRun, start: float, end: float, evidence: _Evidence) -> Overlap:
    requests, ops, faults, params = evidence.requests, evidence.ops, evidence.faults, evidence.params

    def overlap(cause: str, excused: bool, detail: str) -> Overlap:
        return Overlap(older, newer, start, end, cause, excused, detail)

    if older.token is not None and older.token == newer.token:
        return overlap("unexplained", False, f"two commands of one term (token {older.token}) ran at once")
    older_writes = [r for r in requests if getattr(ops.get(str(r.get("op"))), "pid", None) == older.pid]
    pause = next(
        (
            f
            for f in faults
            if f.name == "pause" and f.target == older.process and older.start <= f.start <= end
        ),
        None,
    )
    if pause is not None:
        begun = evidence.begins.get(newer.token or -1, newer.start)
        accepted = [r for r in older_writes if r["t"] >= begun and r.get("verdict") == "accepted"]
        if accepted:
            return overlap(
                "pause",
                False,
                f"{older.process} was paused (fault {pause.fault_id}), and the register accepted "
                f"{len(accepted)} of its writes after term {newer.token} began",
            )
        return overlap(
            "pause",
            True,
            f"{older.process} was paused (fault {pause.fault_id}); every write of its command after "
            f"term {newer.token} began was rejected",
        )
    deletion = next(
        (
            (f, label, cause)
            for f, first, last, label, cause in _operator_windows(
                faults, evidence.nodes.get(older.token or -1)
            )
            # The operator's deletions (a recursive delete may take several rounds) touched the
            # older command's term, and the overlap began soon after.
            if first <= older.end
            and older.start <= last + _EPSILON_S
            and start - last <= params.liveness_bound_s
        ),
        None,
    )
    if deletion is not None:
        fault, label, cause = deletion
        limit = params.kill_grace_s + params.slack_s
        newer_first = min(
            (
                float(r["t"])
                for r in requests
                if r.get("verdict") == "accepted" and r.get("token") == newer.token
            ),
            default=None,
        )
        late = [
            r
            for r in older_writes
            if newer_first is not None and r["t"] > newer_first and r.get("verdict") == "accepted"
        ]
        if end - start > limit or late:
            return overlap(
                cause,
                False,
                f"{label} (fault {fault.fault_id}): the overlap lasted {end - start:.3f} s "
                f"(allowed {limit:.3f} s) and {len(late)} writes of the old term were accepted "
                "after the new one's",
            )
        return overlap(
            cause,
            True,
            f"{label} (fault {fault.fault_id}) by an operator; the old leader stopped within "
            f"{end - start:.3f} s",
        )
    return overlap("unexplained", False, "no pause or operator deletion explains it")


def _operator_windows(
    faults: list[_Fault], older_node: str | None
) -> Iterable[tuple[_Fault, float, float, str, str]]:
    """Operators' acts that may end a term: (fault, from, to, label, cause).

    A deletion fault spans its whole injection; a hostile client's act is one moment, and
    counts only for the node it was aimed at (when both are known).
    """
    for f in faults:
        if f.name in _DELETION_FAULTS:
            yield f, f.start, f.heal, f.name, "operator_deletion"
        for act in f.acts:
            if act.node is None or older_node is None or act.node == older_node:
                label = f"{f.name}: {act.action} of {act.node}"
                yield f, act.t, act.t, label, _OPERATOR_ACTS[act.action]


def _check_containment(overlaps: list[Overlap], params: CheckParams) -> CheckResult:
    violations = [
        Violation(
            "containment",
            "overlap",
            f"{o.older.process} (token {o.older.token}) and {o.newer.process} (token {o.newer.token}) "
            f"ran leader-only commands at once for {o.duration_s:.3f} s: {o.detail}",
            o.start,
            o.end,
            {
                "older": {"process": o.older.process, "pid": o.older.pid, "token": o.older.token},
                "newer": {"process": o.newer.process, "pid": o.newer.pid, "token": o.newer.token},
                "cause": o.cause,
            },
        )
        for o in overlaps
        if not o.excused
    ]
    return CheckResult(
        "containment",
        tuple(violations),
        {
            "overlaps": len(overlaps),
            "excused": sum(o.excused for o in overlaps),
            "overlap_total_s": round(sum(o.duration_s for o in overlaps), 6),
            "overlap_max_s": round(max((o.duration_s for o in overlaps), default=0.0), 6),
            "kill_grace_s": params.kill_grace_s,
        },
    )


# -- liveness ----------------------------------------------------------------------------------


def _fault_outcomes(
    faults: list[_Fault], runs: list[ChildRun], observed_until: float, params: CheckParams
) -> list[FaultOutcome]:
    outcomes = []
    for index, fault in enumerate(faults):
        boundary = faults[index + 1].start if index + 1 < len(faults) else observed_until
        before = max(
            (run for run in runs if run.start <= fault.start < run.end),
            key=lambda run: run.start,
            default=None,
        )
        disrupted = before is None or before.end < boundary
        after = next(
            (
                run
                for run in runs
                if run.start > fault.start
                and (before is None or run.pid != before.pid)
                and run.start <= boundary
            ),
            None,
        )
        failover = after.start - fault.start if disrupted and after is not None else None
        outcomes.append(
            FaultOutcome(
                fault_id=fault.fault_id,
                name=fault.name,
                target=fault.target,
                start=fault.start,
                heal=fault.heal,
                healed=fault.healed,
                disrupted=disrupted,
                failover_s=failover,
                recovery_s=_recovery(
                    runs, fault.healed, min(boundary, fault.healed + params.liveness_bound_s)
                ),
                token_before=before.token if before is not None else None,
                token_after=after.token if after is not None and disrupted else None,
            )
        )
    return outcomes


def _recovery(runs: Iterable[ChildRun], t: float, until: float) -> float | None:
    """Seconds from ``t`` until a command runs that lasts until ``until``: 0 if one runs at ``t``.

    A command still running at ``t`` but about to die (a killed daemon's) does not count.
    """
    starts = []
    for run in runs:
        if run.start <= t and run.end >= until:
            return 0.0
        if run.start > t:
            starts.append(run.start)
    return min(starts) - t if starts else None


def _unexpected_exits(history: History) -> list[Violation]:
    """Daemons that exited although nobody signalled them: a crash is a bug, and a lost contender."""
    signalled = {_incarnation(r) for r in history.select("fleet", "daemon_killed", "daemon_terminated")}
    return [
        Violation(
            "liveness",
            "daemon_died",
            f"{record.get('process')}'s daemon (pid {record.get('daemon_pid')}) exited by itself with "
            f"status {record.get('returncode')}",
            float(record["t"]),
            float(record["t"]),
            {"process": record.get("process"), "returncode": record.get("returncode")},
        )
        for record in history.select("fleet", "daemon_exited")
        if _incarnation(record) not in signalled
    ]


def _check_liveness(history: History, outcomes: list[FaultOutcome], params: CheckParams) -> CheckResult:
    bound = params.liveness_bound_s
    violations = _unexpected_exits(history)
    for outcome in outcomes:
        if outcome.recovery_s is None or outcome.recovery_s > bound:
            waited = (
                "no leader-only command ran again"
                if outcome.recovery_s is None
                else (f"the next leader-only command started {outcome.recovery_s:.3f} s later")
            )
            violations.append(
                Violation(
                    "liveness",
                    "no_leader_after_heal",
                    f"fault {outcome.fault_id} ({outcome.name}) healed; {waited} (bound {bound:.3f} s)",
                    outcome.healed,
                    outcome.healed + (outcome.recovery_s or bound),
                    {"fault_id": outcome.fault_id, "fault": outcome.name, "recovery_s": outcome.recovery_s},
                )
            )
    for outcome in outcomes:
        if outcome.name in _NO_BOUNCE_FAULTS and outcome.disrupted:
            violations.append(
                Violation(
                    "liveness",
                    "bounced",
                    f"fault {outcome.fault_id} ({outcome.name}) stopped the leader-only command "
                    f"(token {outcome.token_before}): a ZooKeeper restart must not bounce it",
                    outcome.start,
                    outcome.healed,
                    {"fault_id": outcome.fault_id, "fault": outcome.name},
                )
            )
    failovers: dict[str, float] = {}
    for outcome in outcomes:
        if outcome.failover_s is not None:
            failovers[outcome.name] = max(failovers.get(outcome.name, 0.0), round(outcome.failover_s, 3))
    return CheckResult(
        "liveness",
        tuple(violations),
        {"faults": len(outcomes), "bound_s": round(bound, 3), "worst_failover_s": failovers},
    )


# -- lost writes -------------------------------------------------------------------------------


def _check_no_lost_writes(history: History, requests: list[Record]) -> CheckResult:
    violations: list[Violation] = []
    final = history.first("register", "final")
    acked = [r for r in history.select("workload", "write") if r.get("result") == "ok"]
    metrics: dict[str, Any] = {
        "acknowledged_to_writers": len(acked),
        "attempted": len(history.select("workload", "write")),
    }
    if final is None:
        violations.append(
            Violation(
                "no_lost_writes",
                "no_final_state",
                "the register's final state was not read",
                history.end,
                history.end,
            )
        )
        return CheckResult("no_lost_writes", tuple(violations), metrics)
    t_final = float(final["t"])
    kept = {str(op) for op in final.get("accepted", ())}
    by_op = {str(r.get("op")): r for r in requests}
    accepted = sorted(
        (r for r in requests if r.get("verdict") == "accepted"), key=lambda r: int(r.get("seq") or 0)
    )
    metrics["final_writes"] = len(kept)
    for request in accepted:
        if str(request.get("op")) not in kept:
            violations.append(
                Violation(
                    "no_lost_writes",
                    "acknowledged_write_lost",
                    f"the register accepted op {request.get('op')} (token {request.get('token')}) "
                    "but its final state lacks it",
                    float(request["t"]),
                    t_final,
                    {"op": request.get("op")},
                )
            )
    for write in acked:
        op = str(write.get("op"))
        logged = by_op.get(op)
        if logged is not None and logged.get("verdict") != "accepted":
            violations.append(
                Violation(
                    "no_lost_writes",
                    "ack_mismatch",
                    f"{write.get('process')} was told op {op} was accepted; the register's log says rejected",
                    float(write["t"]),
                    float(write["t"]),
                    {"op": op},
                )
            )
        elif op not in kept:
            violations.append(
                Violation(
                    "no_lost_writes",
                    "acknowledged_write_lost",
                    f"{write.get('process')} was told op {op} (token {write.get('token')}) was accepted, "
                    "but the register's final state lacks it",
                    float(write["t"]),
                    t_final,
                    {"op": op},
                )
            )
    accepted_ops = {str(r.get("op")) for r in accepted}
    for op in sorted(kept - accepted_ops):
        violations.append(
            Violation(
                "no_lost_writes",
                "phantom_write",
                f"the register's final state holds op {op}, which its log never accepted",
                t_final,
                t_final,
                {"op": op},
            )
        )
    last = accepted[-1].get("op") if accepted else None
    if final.get("last") != last:
        violations.append(
            Violation(
                "no_lost_writes",
                "final_read_mismatch",
                f"the register's final read is {final.get('last')!r}, its last accepted write {last!r}",
                t_final,
                t_final,
                {"read": final.get("last"), "last_accepted": last},
            )
        )
    return CheckResult("no_lost_writes", tuple(violations), metrics)
