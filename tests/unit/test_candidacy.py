"""Queue ordering and node payloads: the pure parts of the recipe."""

from __future__ import annotations

from election_daemon.candidacy import decode_node_data, encode_node_data, parse_contenders

G1 = "a" * 32
G2 = "b" * 32
G3 = "c" * 32


def test_contenders_are_ordered_by_sequence_not_by_name() -> None:
    children = [f"_c_{G1}-0000000012", f"_c_{G2}-0000000003", f"_c_{G3}-0000000100"]
    order = [c.guid for c in parse_contenders(children)]
    assert order == [G2, G1, G3]


def test_foreign_names_are_ignored() -> None:
    children = [
        "lock",
        "_c_short-0000000001",
        f"x_c_{G1}-0000000001",
        f"_c_{G1}-000000001",
        f"_c_{G2}-0000000004",
    ]
    assert [c.guid for c in parse_contenders(children)] == [G2]


def test_overflowed_sequence_parses_as_negative() -> None:
    [c] = parse_contenders([f"_c_{G1}--2147483648"])
    assert c.sequence == -2147483648


def test_payload_round_trips_json_and_bytes() -> None:
    assert decode_node_data(encode_node_data("h:1", {"addr": "10.0.0.1:80"})) == (
        "h:1",
        {"addr": "10.0.0.1:80"},
    )
    assert decode_node_data(encode_node_data("h:1", b"\x00\xff")) == ("h:1", b"\x00\xff")
    assert decode_node_data(encode_node_data("h:1", None)) == ("h:1", None)


def test_foreign_payload_is_returned_raw() -> None:
    assert decode_node_data(b"\xff\xfe") == (None, b"\xff\xfe")
    assert decode_node_data(b'{"no": "id"}') == (None, b'{"no": "id"}')
