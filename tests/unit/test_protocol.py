"""The step-down and handover documents: what the writer encodes, the reader accepts, and nothing else."""

from __future__ import annotations

import pytest

from election_daemon.errors import ConfigError
from election_daemon.library import payload
from election_daemon.library.candidacy import encode_node_data
from election_daemon.library.protocol import (
    MAX_REQUEST_ID,
    Handover,
    decode_handover,
    encode_handover,
    new_request_id,
    step_down_request,
    with_step_down_request,
)

PATH = "/election/scheduler"
NODE = f"{PATH}/_c_{'a' * 32}-0000000007"

HOSTILE = [
    b'{"id":"x","a":' + b"[" * 1500 + b"]" * 1500 + b"}",
    b'{"id":"x","a":NaN}',
    b'{"id":"x","a":1e999}',
    b'{"id":"x","a":-Infinity}',
    b'{"id":"\xff"}',
    b'{"id":"x","a":"' + b"y" * (1024 * 1024) + b'"}',
    b'{"id":"x","a":' + b"1" * 5000 + b"}",
    b"",
    b"null",
    b"[]",
    b'"step_down"',
    b"\x00\x01\x02",
]
HOSTILE_IDS = [
    "deep",
    "nan",
    "overflow",
    "infinity",
    "not-utf8",
    "too-large",
    "huge-int",
    "empty",
    "null",
    "array",
    "string",
    "binary",
]


# -- step-down --------------------------------------------------------------------------


def test_a_step_down_request_round_trips_and_keeps_the_node_data() -> None:
    raw = encode_node_data("h:1", {"url": "http://x"})
    written = with_step_down_request(raw, "r1")
    assert step_down_request(written) == "r1"
    doc = payload.loads(written)
    assert doc["id"] == "h:1"
    assert doc["data"] == {"url": "http://x"}


def test_a_second_request_replaces_the_first() -> None:
    raw = with_step_down_request(with_step_down_request(encode_node_data("h:1", None), "r1"), "r2")
    assert step_down_request(raw) == "r2"


def test_node_data_without_a_request_is_no_request() -> None:
    assert step_down_request(encode_node_data("h:1", None)) is None
    assert step_down_request(encode_node_data("h:1", {"step_down": {"request": "r"}})) is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id":"h","step_down":{"request":""}}',
        b'{"id":"h","step_down":{"request":"' + b"x" * (MAX_REQUEST_ID + 1) + b'"}}',
        b'{"id":"h","step_down":["r"]}',
        b'{"id":"h","step_down":"r"}',
        b'{"id":"h","step_down":{"request":7}}',
        b'{"id":"h","step_down":{"request":null}}',
        b'{"id":"h","step_down":{"request":["r"]}}',
        b'{"id":"h","step_down":{"request":NaN}}',
        b'{"id":"h","step_down":{"id":"r"}}',
        b'{"id":"h","step_down":null}',
    ],
    ids=[
        "empty",
        "oversized",
        "list",
        "string",
        "number",
        "null",
        "list-id",
        "nan",
        "no-request",
        "null-doc",
    ],
)
def test_malformed_step_down_requests_are_no_requests(raw: bytes) -> None:
    assert step_down_request(raw) is None


def test_the_longest_request_id_is_accepted() -> None:
    assert step_down_request(b'{"step_down":{"request":"' + b"x" * MAX_REQUEST_ID + b'"}}') == (
        "x" * MAX_REQUEST_ID
    )


def test_a_deeply_nested_step_down_request_is_no_request() -> None:
    raw = b'{"step_down":{"request":"r"},"x":' + b"[" * 100 + b"]" * 100 + b"}"
    assert step_down_request(raw) is None


@pytest.mark.parametrize("raw", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_node_data_is_no_step_down_request(raw: bytes) -> None:
    assert step_down_request(raw) is None


@pytest.mark.parametrize("raw", HOSTILE, ids=HOSTILE_IDS)
def test_a_request_written_over_foreign_data_replaces_it(raw: bytes) -> None:
    written = with_step_down_request(raw, "r1")
    assert step_down_request(written) == "r1"
    assert payload.loads(written) == {"step_down": {"request": "r1"}}


@pytest.mark.parametrize("bad", ["", "x" * (MAX_REQUEST_ID + 1), None, 7])
def test_we_never_write_a_request_id_we_would_not_read(bad: object) -> None:
    with pytest.raises(ConfigError, match="request"):
        with_step_down_request(b"", bad)  # type: ignore[arg-type]


def test_new_request_ids_are_unique_and_accepted() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    for request_id in ids:
        assert step_down_request(with_step_down_request(b"", request_id)) == request_id


# -- handover ---------------------------------------------------------------------------


def test_a_handover_round_trips() -> None:
    raw = encode_handover(PATH, NODE, "r1")
    assert decode_handover(PATH, raw, 3) == Handover(NODE, "r1", 3)


def test_a_handover_of_any_recipe_is_accepted() -> None:
    for child in (
        "n_0000000001",
        f"{'b' * 32}__lock__0000000002",
        "_c_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-latch-0000000003",
    ):
        raw = encode_handover(PATH, f"{PATH}/{child}", "r")
        assert decode_handover(PATH, raw) == Handover(f"{PATH}/{child}", "r", 0)


@pytest.mark.parametrize(
    "to",
    [
        "/other/_c_" + "a" * 32 + "-0000000007",
        PATH + "x/_c_" + "a" * 32 + "-0000000007",
        PATH + "/sub/_c_" + "a" * 32 + "-0000000007",
        PATH + "/",
        PATH,
        PATH + "/leader",
        PATH + "/../_c_" + "a" * 32 + "-0000000007/x",
        "_c_" + "a" * 32 + "-0000000007",
        "",
    ],
    ids=[
        "other-path",
        "prefix-path",
        "grandchild",
        "empty-child",
        "the-path",
        "no-sequence",
        "dotdot",
        "relative",
        "empty",
    ],
)
def test_handover_targets_outside_the_path_are_refused(to: str) -> None:
    raw = payload.dumps({"handover_to": to, "request": "r"}).encode()
    assert decode_handover(PATH, raw) is None
    with pytest.raises(ConfigError, match="handover_to"):
        encode_handover(PATH, to, "r")


@pytest.mark.parametrize(
    "doc",
    [
        {"handover_to": NODE},
        {"handover_to": NODE, "request": ""},
        {"handover_to": NODE, "request": "x" * (MAX_REQUEST_ID + 1)},
        {"handover_to": NODE, "request": 7},
        {"handover_to": NODE, "request": None},
        {"handover_to": [NODE], "request": "r"},
        {"handover_to": {"node": NODE}, "request": "r"},
        {"handover_to": 7, "request": "r"},
        {"handover_to": None, "request": "r"},
        {"request": "r"},
    ],
    ids=[
        "no-request",
        "empty-id",
        "oversized-id",
        "number-id",
        "null-id",
        "list",
        "object",
        "number",
        "null",
        "no-target",
    ],
)
def test_malformed_handovers_are_no_handovers(doc: object) -> None:
    assert decode_handover(PATH, payload.dumps(doc).encode()) is None


@pytest.mark.parametrize("raw", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_path_data_is_no_handover(raw: bytes) -> None:
    assert decode_handover(PATH, raw) is None


def test_a_nested_or_non_finite_handover_is_no_handover() -> None:
    good = payload.dumps({"handover_to": NODE, "request": "r"})
    deep = good[:-1] + ',"x":' + "[" * 100 + "]" * 100 + "}"
    assert decode_handover(PATH, deep.encode()) is None
    assert decode_handover(PATH, (good[:-1] + ',"x":NaN}').encode()) is None


@pytest.mark.parametrize("bad", ["", "x" * (MAX_REQUEST_ID + 1)])
def test_we_never_write_a_handover_we_would_not_read(bad: str) -> None:
    with pytest.raises(ConfigError, match="request"):
        encode_handover(PATH, NODE, bad)
