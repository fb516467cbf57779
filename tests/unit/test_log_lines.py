"""What a log line says and at which level: transitions' own keys, levels, the console's one line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from election_daemon.daemon.logs import configure_logging, get_logger, level_of
from election_daemon.library.events import REQUESTED_REVOCATIONS, Event, Reason
from election_daemon.library.transitions import ElectionState, Transition


def transition(event: Event, reason: Reason | None = None, **extra: Any) -> Transition:
    return Transition(
        event=event,
        state=ElectionState.JOINING,
        previous_state=ElectionState.LEADING,
        reason=reason,
        path="/e",
        id="a",
        node="/e/n-1",
        token=7,
        session_id=0x1F,
        timestamp=1000.0,
        monotonic_s=5.0,
        **extra,
    )


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


@pytest.mark.parametrize("reason", sorted(REQUESTED_REVOCATIONS))
def test_a_requested_revocation_is_info(reason: Reason) -> None:
    assert level_of(transition(Event.REVOKED, reason)) == "info"


@pytest.mark.parametrize(
    "reason", [Reason.LEASE_EXPIRED, Reason.CONNECTION_LOST, Reason.SESSION_EXPIRED, Reason.NODE_DELETED]
)
def test_any_other_loss_of_leadership_is_a_warning(reason: Reason) -> None:
    assert level_of(transition(Event.REVOKED, reason)) == "warning"


def test_levels_of_the_other_transitions() -> None:
    assert level_of(transition(Event.INTERNAL_ERROR, Reason.INTERNAL_ERROR)) == "error"
    assert level_of(transition(Event.FAILED, Reason.NO_AUTH)) == "error"
    assert level_of(transition(Event.SESSION_LOST, Reason.SESSION_EXPIRED)) == "warning"
    assert level_of(transition(Event.SESSION_LOST, Reason.SESSION_CLOSED)) == "info"
    assert level_of(transition(Event.NODE_LOST, Reason.NODE_DELETED)) == "warning"
    assert level_of(transition(Event.DISCONNECTED, Reason.CONNECTION_LOST)) == "warning"
    for event in (Event.CONNECTED, Event.JOINED, Event.ELECTED, Event.SUSPENDED, Event.PREDECESSOR_GONE):
        assert level_of(transition(event)) == "info"


def test_each_event_has_its_own_keys_null_when_unknown() -> None:
    elected = transition(Event.ELECTED).log_fields()
    assert (elected["previous_id"], elected["previous_token"]) == (None, None)
    assert "term_s" not in elected and "server" not in elected and "failover_s" not in elected
    recorded = transition(Event.TERM_RECORDED).log_fields()
    assert (recorded["previous_id"], recorded["previous_token"], recorded["failover_s"]) == (None, None, None)
    assert transition(Event.REVOKED, Reason.LEASE_EXPIRED).log_fields()["term_s"] is None
    assert transition(Event.JOINED).log_fields()["leader_id"] is None
    assert transition(Event.DEFERRED, Reason.HANDOVER).log_fields()["target_id"] is None
    connected = transition(Event.CONNECTED, Reason.CONNECTED, server="zk1:2181", session_timeout_s=10.0)
    assert (connected.log_fields()["server"], connected.log_fields()["session_timeout_s"]) == (
        "zk1:2181",
        10.0,
    )
    # Known elsewhere, a key is still there.
    assert transition(Event.STOPPED, Reason.STOPPED, leader_id="b").log_fields()["leader_id"] == "b"


def test_failover_counts_from_the_previous_terms_last_proof_of_life_to_the_election() -> None:
    recorded = transition(Event.TERM_RECORDED, previous_id="b", previous_token=5, previous_alive_at=990.5)
    fields = recorded.log_fields()
    assert (fields["previous_id"], fields["previous_token"], fields["failover_s"]) == ("b", 5, 9.5)
    # Timed to the elected edge, not to the record's write after it.
    elected_earlier = transition(Event.TERM_RECORDED, previous_alive_at=990.5, elected_at=999.5)
    assert elected_earlier.failover_s == 9.0
    # Another host's clock ahead of ours: never a negative failover.
    assert transition(Event.TERM_RECORDED, previous_alive_at=1001.0).failover_s == 0.0


def log_console(*events: tuple[str, str, dict[str, Any]]) -> list[str]:
    out = io.StringIO()
    context = {"state": "leading", "path": "/e", "id": "host:42", "node": "/e/n-1", "token": 7}
    configure_logging("console", context=lambda: dict(context, session_id="0x1f"), stream=out)
    log = get_logger()
    for level, event, fields in events:
        getattr(log, level)(event, **fields)
    return out.getvalue().splitlines()


def test_the_console_spends_one_line_per_event() -> None:
    lines = log_console(
        ("info", "elected", {"previous_state": "following", "previous_id": "b", "failover_s": None}),
        (
            "warning",
            "revoked",
            {"state": "joining", "previous_state": "leading", "reason": "lease_expired", "term_s": 12.5},
        ),
        ("info", "hook_finished", {"name": "revoked", "stdout": "one\ntwo\r\n", "exit_code": 0}),
        ("info", "connected", {"previous_state": "leading", "server": "zk1:2181"}),
    )
    assert len(lines) == 4
    elected, revoked, hook, connected = lines
    assert "[info" in elected and "elected" in elected and "state=following→leading" in elected
    assert "token=7" in elected and "previous_id=b" in elected
    # Nulls, the node, the monotonic clock and the identity that every line would repeat are left out.
    for absent in ("failover_s", " node=", "monotonic_s", " path=", " id=", "session_id=", "previous_state"):
        assert absent not in elected, absent
    assert "[warning" in revoked and "state=leading→joining" in revoked and "reason=lease_expired" in revoked
    assert "stdout='one\\ntwo\\r\\n'" in hook
    # The session's news names who and where.
    assert "path=/e" in connected and "id=host:42" in connected and "session_id=0x1f" in connected
    assert "state=leading " in connected and "→" not in connected


def test_library_lines_take_the_same_single_line() -> None:
    out = io.StringIO()
    configure_logging("console", stream=out)
    logging.getLogger("election_daemon.library.session").warning("session %s\nlost", "0x1")
    assert len(out.getvalue().splitlines()) == 1
    assert "message='session 0x1\\nlost'" in out.getvalue()


def test_json_lines_keep_every_schema_key() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    fields = transition(Event.ELECTED).log_fields()
    get_logger().info(fields.pop("event"), **fields)
    line = json.loads(out.getvalue())
    assert line["previous_id"] is None and line["node"] == "/e/n-1" and line["level"] == "info"
