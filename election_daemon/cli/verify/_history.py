"""The verification history: one JSON record per observed event, from every source, ordered by monotonic time.

Every record has ``t`` (``time.monotonic()`` seconds: CLOCK_MONOTONIC, one clock for every
process of the host), ``source`` and ``event``; the rest depends on the source:

``daemon``
    A daemon's JSON log line, with ``process`` (the participant: ``p1``, ...) and ``daemon_pid``
    added. Its own keys are kept, so ``pid`` is the child's pid on ``child_*`` events.
``workload``
    A line of the leader-only command: ``event: write`` with ``op``, ``writer``, ``token``,
    ``pid`` (the command's), ``invoke_s`` and ``result`` (``ok``, ``rejected`` or ``error``).
``register``
    The fence's record of each request (``event: request``: ``seq``, ``op``, ``writer``,
    ``token``, ``verdict``, ``reason``; ``t`` is when the register received it), and its
    state read back after the run (``event: final``: ``accepted`` op ids, ``last``).
``nemesis``
    Faults: ``start``, ``heal`` and ``healed`` (healing complete), with ``fault``, ``fault_id``
    and ``target``.
``fleet``
    Process lifecycle seen from outside: ``daemon_started``, ``daemon_terminated`` (SIGTERM
    sent), ``daemon_killed`` (SIGKILL sent), ``daemon_exited`` (with ``returncode``),
    ``child_gone`` (a dead daemon's command seen gone).
``runner``
    ``params`` (first): the run's parameters; ``no_leader`` (none found before a fault);
    ``shutdown`` (the daemons are being stopped: observation ends); ``end`` (last).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from election_daemon.errors import ConfigError

__all__ = ["SOURCES", "History", "Record", "Recorder", "daemon_record", "wall_seconds"]

Record = dict[str, Any]

SOURCES = frozenset({"daemon", "workload", "register", "nemesis", "fleet", "runner"})


class History:
    """Records from every source, sorted by ``t`` (stable: equal times keep their given order)."""

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        checked = [_checked(index, record) for index, record in enumerate(records)]
        self.records: list[Record] = sorted(checked, key=lambda record: float(record["t"]))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    @property
    def start(self) -> float:
        return float(self.records[0]["t"]) if self.records else 0.0

    @property
    def end(self) -> float:
        return float(self.records[-1]["t"]) if self.records else 0.0

    def select(self, source: str, *events: str) -> list[Record]:
        """Records of ``source``, only the given events if any are named."""
        return [r for r in self.records if r["source"] == source and (not events or r["event"] in events)]

    def first(self, source: str, event: str) -> Record | None:
        return next((r for r in self.records if r["source"] == source and r["event"] == event), None)

    def window(self, t_start: float, t_end: float, *, limit: int = 60) -> list[Record]:
        """The records in [t_start, t_end], at most ``limit`` of them (those nearest t_start)."""
        return [r for r in self.records if t_start <= r["t"] <= t_end][:limit]

    def dump(self, path: Path) -> None:
        """Write JSON lines."""
        with path.open("w", encoding="utf-8") as out:
            for record in self.records:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        """Read JSON lines written by :meth:`dump`."""
        with path.open(encoding="utf-8") as lines:
            return cls(json.loads(line) for line in lines if line.strip())


def _checked(index: int, record: Mapping[str, Any]) -> Record:
    t = record.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise ConfigError("history", f"record {index} has no numeric t: {dict(record)!r}")
    if record.get("source") not in SOURCES:
        raise ConfigError("history", f"record {index} has an unknown source: {dict(record)!r}")
    if not isinstance(record.get("event"), str):
        raise ConfigError("history", f"record {index} has no event: {dict(record)!r}")
    return dict(record)


class Recorder:
    """Collects records as the run goes; :meth:`history` sorts them."""

    def __init__(self) -> None:
        self._records: list[Record] = []

    def add(self, t: float, source: str, event: str, **fields: Any) -> Record:
        record: Record = {"t": round(t, 6), "source": source, "event": event, **fields}
        self._records.append(record)
        return record

    def extend(self, records: Iterable[Record]) -> None:
        self._records.extend(records)

    def history(self) -> History:
        return History(self._records)


def daemon_record(
    fields: Mapping[str, Any], *, process: str, daemon_pid: int, wall_offset_s: float
) -> Record:
    """A daemon log line as a record.

    Transition lines carry ``monotonic_s``; other lines (``child_*``) only the wall-clock
    ``timestamp``, which ``wall_offset_s`` (wall clock minus monotonic clock, best taken from
    the same daemon's latest transition line) converts.
    """
    monotonic = fields.get("monotonic_s")
    if isinstance(monotonic, int | float) and not isinstance(monotonic, bool):
        t = float(monotonic)
    else:
        t = wall_seconds(fields) - wall_offset_s
    record: Record = {"t": round(t, 6), "source": "daemon", "process": process, "daemon_pid": daemon_pid}
    record.update((key, value) for key, value in fields.items() if key not in ("t", "source"))
    return record


def wall_seconds(fields: Mapping[str, Any]) -> float:
    """The line's ISO ``timestamp`` as seconds since the epoch (ValueError if there is none)."""
    stamp = fields.get("timestamp")
    if not isinstance(stamp, str):
        raise ValueError("the log line has no timestamp")
    return datetime.fromisoformat(stamp).timestamp()
