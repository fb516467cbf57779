"""Everything we print is strict JSON, and observers never crash on what participants publish."""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from election_daemon.cli.dashboard import Dashboard
from election_daemon.cli.observe import _status_table, _status_text, change_record, initial_record
from election_daemon.daemon import jsonout
from election_daemon.daemon.endpoints import _dumps as endpoint_dumps
from election_daemon.daemon.logs import configure_logging
from election_daemon.library.events import Reason
from election_daemon.library.observer import LeaderChange, Snapshot
from election_daemon.library.recipes import Recipe

pytestmark = pytest.mark.timeout(10)


def strict_loads(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in output: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


HOSTILE_DATA: list[Any] = [
    float("nan"),
    {"x": float("inf"), "y": [float("-inf"), 1.5]},
    b"\xff\xfe\x00binary",
    {(1, 2): "tuple key", 3: "int key"},
    "\udcff lone surrogate \u202e bidi",
    json.loads("[" * 80 + "]" * 80),
    {1, 2},
    object(),
    10**400,
    {"huge": 10**5000, "nan": float("nan")},
]


@dataclass
class FakeParticipant:
    """A participant as the library might return it, with whatever its node held."""

    id: Any
    node: str
    token: int
    session_id: int
    data: Any
    is_leader: bool
    priority: int = 0
    recipe: Recipe = Recipe.NATIVE
    is_next: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "token": self.token,
            "session_id": f"0x{self.session_id:x}",
            "data": self.data,
            "is_leader": self.is_leader,
            "priority": self.priority,
        }


def snapshot(data: Any, identity: Any = "a") -> Snapshot:
    leader = FakeParticipant(identity, "/svc/n-0000000001", 4294967311, 0x1000, data, True)
    other = FakeParticipant(None, "/svc/n-0000000002", 4294967312, 0x1001, b"\x00", False)
    now = time.time()
    return Snapshot(
        path="/svc",
        leader=leader,  # type: ignore[arg-type]
        participants=(leader, other),  # type: ignore[arg-type]
        leader_since=now - 3,
        takeover_seen=False,
        taken_at=now,
        connected=True,
    )


@pytest.mark.parametrize("data", HOSTILE_DATA, ids=range(len(HOSTILE_DATA)))
def test_dumps_is_strict_and_total(data: Any) -> None:
    text = jsonout.dumps({"data": data})
    strict_loads(text)
    assert text.isascii()


def test_non_finite_numbers_become_null_and_bytes_base64() -> None:
    assert strict_loads(jsonout.dumps([float("nan"), float("inf"), 1.5])) == [None, None, 1.5]
    assert strict_loads(jsonout.dumps(b"\x00\xff")) == "AP8="


def test_a_value_too_deep_for_json_still_gives_json() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    strict_loads(jsonout.dumps({"deep": deep, "nan": float("nan")}))


@pytest.mark.parametrize("data", HOSTILE_DATA, ids=range(len(HOSTILE_DATA)))
def test_status_and_watch_output_never_crash(data: Any) -> None:
    view = snapshot(data, identity=data if not isinstance(data, str) else "a")
    strict_loads(jsonout.dumps(view.as_dict()))
    assert _status_text(view).startswith("/svc: leader")
    _status_table(view)
    change = LeaderChange(
        time=time.time(),
        previous=view.participants[1],
        leader=view.leader,
        token=4294967311,
        reason=Reason.LEADER_LEFT,
        leaderless_s=float("nan"),
    )
    strict_loads(jsonout.dumps(change_record("/svc", change)))
    strict_loads(jsonout.dumps(initial_record(view)))


@pytest.mark.parametrize("data", HOSTILE_DATA, ids=range(len(HOSTILE_DATA)))
async def test_dashboard_state_and_events_are_strict(data: Any) -> None:
    dashboard = Dashboard("/svc")
    view = snapshot(data)
    dashboard.update(view)
    dashboard.record(
        LeaderChange(
            time=time.time(),
            previous=None,
            leader=view.leader,
            token=1,
            reason=Reason.FIRST_CONTENDER,
            leaderless_s=None,
        )
    )
    event = dashboard._event().decode()
    assert event.startswith("data: ") and event.endswith("\n\n")
    assert event.count("\n") == 2
    strict_loads(event[len("data: ") :])
    response = await dashboard._api_state(None)  # type: ignore[arg-type]
    assert response.text is not None
    strict_loads(response.text)


def test_status_endpoint_encoder_is_strict() -> None:
    text = endpoint_dumps({"leader": snapshot(float("nan")).as_dict()["leader"], "lease": float("inf")})
    assert text.endswith("\n")
    strict_loads(text)


def test_json_logs_are_strict_and_never_lose_a_line() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out, context=lambda: {"path": "/svc", "id": float("nan")})
    try:
        log = structlog.get_logger()
        log.info("weird", value=float("nan"), blob=b"\xff", thing=object(), key={(1, 2): float("inf")})
        deep: list[Any] = []
        for _ in range(50_000):
            deep = [deep]
        log.info("deep", deep=deep)
        log.info("plain", n=1)
        logging.getLogger("election_daemon.test").warning("library %s", float("nan"))
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    records = [strict_loads(line) for line in lines]
    assert [r["event"] for r in records] == ["weird", "deep", "plain", "log"]
    assert records[0]["value"] is None
    assert records[0]["id"] is None
    assert records[2]["n"] == 1


def test_a_failing_context_never_costs_a_log_line() -> None:
    out = io.StringIO()

    def broken() -> dict[str, Any]:
        raise RuntimeError("view unavailable")

    configure_logging("json", stream=out, context=broken)
    try:
        structlog.get_logger().info("http_failed", reason="x")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    (record,) = [strict_loads(line) for line in out.getvalue().splitlines()]
    assert (record["event"], record["path"], record["reason"]) == ("http_failed", None, "x")
