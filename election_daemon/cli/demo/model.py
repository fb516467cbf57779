"""The demo's pure model: the daemons as members, fed by their JSON log lines and by reads of the
election queue, the failovers measured, and how the run went.

:class:`Cluster` holds it all, with a :class:`~election_daemon.testing.SafetyCheck` that fails the
run when a ``child_started`` comes while another daemon's term is open. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import itertools
import random
import signal
from dataclasses import dataclass

from election_daemon.library.candidacy import Participant
from election_daemon.testing import DaemonEvent, SafetyCheck

__all__ = [
    "ChildStart",
    "Cluster",
    "Failover",
    "FaultKind",
    "Member",
    "Row",
    "Summary",
    "count_of",
    "fault_plan",
    "token_text",
]


class FaultKind(enum.Enum):
    """How the demo ends a leader."""

    TERM = "SIGTERM"
    KILL = "SIGKILL"

    @property
    def description(self) -> str:
        return "graceful stop" if self is FaultKind.TERM else "crash"


@dataclass(eq=False)
class Member:
    """One daemon process: an incarnation of a participant id (a restarted daemon is a new member)."""

    id: str
    pid: int
    state: str = "starting"
    node: str | None = None
    token: int | None = None
    child_pgid: int | None = None
    output: str = ""
    """The last line its leader-only command printed."""
    fault: FaultKind | None = None
    """How the demo ended it, set before the signal is sent; None while it is not meant to end."""
    ended: str | None = None
    """How its process ended ("killed (SIGKILL)", "exited 0"); None while it runs."""

    @property
    def alive(self) -> bool:
        return self.ended is None

    @property
    def leading(self) -> bool:
        return self.alive and self.state == "leading"


@dataclass(frozen=True, slots=True)
class ChildStart:
    """A ``child_started`` line: a leader-only command began under ``token``."""

    member: Member
    token: int | None
    monotonic_s: float


@dataclass(frozen=True, slots=True)
class Failover:
    """One fault and the leader change it caused."""

    number: int
    kind: FaultKind
    old_leader: str
    new_leader: str
    duration_s: float
    """From the fault to the new leader's ``child_started``."""
    token: int | None
    """The new term's fencing token."""

    def line(self, total: int) -> str:
        return (
            f"failover {self.number}/{total}: {self.kind.value} {self.old_leader} -> {self.new_leader} "
            f"in {self.duration_s:.3f} s, token {token_text(self.token)}"
        )


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the participants table."""

    label: str
    pid: int | None
    state: str
    token: int | None
    """The term's token while leading, else the token its node would lead with."""
    node: str | None
    waits_on: str | None
    """The participant owning the node just before this one in the queue."""
    leader: bool
    gone: bool
    """Its process has ended; a killed daemon's node stays in the queue until its session expires."""


class Cluster:
    """The demo's picture of the election: its members, the queue in ZooKeeper, the failovers."""

    def __init__(self, safety: SafetyCheck[Member] | None = None) -> None:
        self.members: list[Member] = []
        self.queue: list[Participant] = []
        self.child_starts: list[ChildStart] = []
        self.failovers: list[Failover] = []
        self.safety: SafetyCheck[Member] = safety if safety is not None else SafetyCheck()
        self.unexpected_exits: list[str] = []

    def add(self, participant_id: str, pid: int) -> Member:
        member = Member(participant_id, pid)
        self.members.append(member)
        return member

    def record(self, member: Member, event: DaemonEvent) -> None:
        """Apply one of ``member``'s log lines; every line carries the daemon's current view."""
        if event.state is not None:
            member.state = event.state
        member.node = event.node
        member.token = event.token
        if event.name == "child_started":
            member.child_pgid = event.pgid
            start = ChildStart(member, event.token, event.at_s)
            self.child_starts.append(start)
            self.safety.child_started(member, member.id, event.token, event.pgid)
        elif event.name in ("revoked", "child_exited"):
            self.safety.term_ended(member)
            if event.name == "child_exited":
                member.child_pgid = None

    def output(self, member: Member, line: str) -> None:
        member.output = line

    def process_ended(self, member: Member, returncode: int) -> None:
        if returncode < 0:
            member.ended = f"killed ({signal.Signals(-returncode).name})"
        else:
            member.ended = f"exited {returncode}"
        self.safety.process_ended(member)
        # A daemon SIGTERMed before it set up its signal handlers dies of the signal: also fine.
        expected = member.fault is FaultKind.KILL or (
            member.fault is FaultKind.TERM and returncode in (0, -signal.SIGTERM)
        )
        if not expected:
            why = f"after {member.fault.value}" if member.fault is not None else "unbidden"
            self.unexpected_exits.append(f"{member.id} (pid {member.pid}) {member.ended} {why}")

    def problems(self) -> list[str]:
        """Everything that makes the run a failure so far."""
        return [*self.safety.violations, *self.unexpected_exits]

    def queued(self, member: Member) -> bool:
        """Whether the last read of the queue showed ``member``'s node."""
        return member.node is not None and any(p.node == member.node for p in self.queue)

    def leader(self) -> Member | None:
        """The member leading with its command running."""
        for member in self.members:
            if member.leading and member.child_pgid is not None:
                return member
        return None

    def child_start_since(self, since_s: float, *, other_than: Member) -> ChildStart | None:
        """The first command started at or after ``since_s`` by anyone but ``other_than``."""
        for start in self.child_starts:
            if start.monotonic_s >= since_s and start.member is not other_than:
                return start
        return None

    def rows(self) -> list[Row]:
        """The participants in queue order (the leader first), then members not in the queue:
        those running, and the last incarnation of each participant, which shows how it ended."""
        owners = {member.node: member for member in self.members if member.node is not None}
        rows: list[Row] = []
        shown: set[Member] = set()
        previous: str | None = None
        for participant in self.queue:
            member = owners.get(participant.node)
            label = member.id if member is not None else (participant.id or "?")
            rows.append(self._row(member, label, participant.node, participant.token, previous))
            previous = label
            if member is not None:
                shown.add(member)
        last = {member.id: member for member in self.members}
        for member in self.members:
            if member not in shown and (member.alive or last[member.id] is member):
                rows.append(self._row(member, member.id, member.node, member.token, None))
        return rows

    @staticmethod
    def _row(
        member: Member | None, label: str, node: str | None, token: int | None, waits_on: str | None
    ) -> Row:
        if member is None:
            return Row(label, None, "?", token, node, waits_on, leader=False, gone=False)
        return Row(
            label,
            member.pid,
            member.state if member.ended is None else member.ended,
            member.token if member.token is not None else token,
            node,
            waits_on,
            leader=member.leading,
            gone=not member.alive,
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """How the run went."""

    failovers: tuple[Failover, ...]
    problems: tuple[str, ...]
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.interrupted

    @property
    def tokens_increasing(self) -> bool:
        tokens = [f.token for f in self.failovers if f.token is not None]
        return len(tokens) == len(self.failovers) and all(a < b for a, b in itertools.pairwise(tokens))

    def line(self) -> str:
        parts = [count_of(len(self.failovers), "failover")]
        for kind in FaultKind:
            durations = [f.duration_s for f in self.failovers if f.kind is kind]
            if durations:
                low, high = min(durations), max(durations)
                spread = f"{low:.3f} s" if len(durations) == 1 else f"{low:.3f}-{high:.3f} s"
                parts.append(f"{kind.value} ({kind.description}) x{len(durations)}: {spread}")
        if self.failovers:
            parts.append("tokens strictly increasing" if self.tokens_increasing else "TOKENS NOT INCREASING")
        if self.problems:
            parts.append(f"FAILED: {count_of(len(self.problems), 'problem')}")
        else:
            parts.append("no overlapping terms")
        if self.interrupted:
            parts.append("interrupted")
        return "summary: " + "; ".join(parts)


def count_of(n: int, noun: str) -> str:
    """``1 fault``, ``2 faults``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def token_text(token: int | None) -> str:
    return "?" if token is None else str(token)


def fault_plan(count: int, rng: random.Random) -> list[FaultKind]:
    """As many graceful stops as kills (one more of either for an odd count), shuffled."""
    kinds = list(FaultKind)
    rng.shuffle(kinds)
    plan = (kinds * count)[:count]
    rng.shuffle(plan)
    return plan
