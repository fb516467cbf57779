"""The log schema is code: the README's tables list exactly its keys, events and reasons."""

from __future__ import annotations

import re
from pathlib import Path

from election_daemon.daemon.logs import SCHEMA_KEYS
from election_daemon.library.events import Event, Reason

README = Path(__file__).resolve().parents[2] / "README.md"


def _schema_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("### The log schema")
    return text[start : text.index("\n### ", start + 1)]


def _table(header: str) -> list[list[str]]:
    """The backticked names in the first column of the table whose header row starts ``header``."""
    lines = _schema_section().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return rows


def test_the_key_table_is_the_fixed_keys_in_order() -> None:
    keys = [name for row in _table("Key") for name in row]
    assert keys == [key for key in SCHEMA_KEYS if key not in ("monotonic_s", "level")]


def test_the_event_table_lists_every_event_once() -> None:
    events = [name for row in _table("Event") for name in row]
    assert sorted(events) == sorted(Event), "README events differ from election_daemon.library.events.Event"
    assert len(events) == len(set(events))


def test_the_reason_table_lists_every_reason_once() -> None:
    reasons = [name for row in _table("Reason") for name in row]
    assert sorted(reasons) == sorted(Reason)
    assert len(reasons) == len(set(reasons))


def test_every_event_row_gives_its_level() -> None:
    lines = _schema_section().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Event |"))
    assert lines[start] == "| Event | When | Level |"
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 3 and cells[2], f"no level: {line}"
        levels = re.findall(r"\b(debug|info|warning|error|none)\b|library logger", cells[2])
        assert levels, f"no known level in: {line}"
