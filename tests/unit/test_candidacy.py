"""Queue ordering, recipes' node names and node payloads: the pure parts of the recipe."""

from __future__ import annotations

import pytest

from election_daemon.errors import ConfigError
from election_daemon.library._zk import Stat
from election_daemon.library.candidacy import (
    decode_node_data,
    encode_node_data,
    genuine,
    parse_contenders,
)
from election_daemon.library.recipes import Recipe, node_prefix, parse_contender

G1 = "a" * 32
G2 = "b" * 32
G3 = "c" * 32
UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def test_contenders_are_ordered_by_sequence_not_by_name() -> None:
    children = [f"_c_{G1}-0000000012", f"_c_{G2}-0000000003", f"_c_{G3}-0000000100"]
    order = [c.guid for c in parse_contenders(children)]
    assert order == [G2, G1, G3]


def test_every_recipe_queues_by_its_sequence() -> None:
    children = [
        f"_c_{G1}_p5-0000000004",
        f"_c_{UUID}-latch-0000000002",
        f"{G2}__lock__0000000003",
        "n_0000000001",
        "node_0000000005",
        f"_c_{UUID}-lock-0000000006",
    ]
    found = parse_contenders(children)
    assert [(c.sequence, c.recipe) for c in found] == [
        (1, Recipe.OTHER),
        (2, Recipe.CURATOR),
        (3, Recipe.KAZOO),
        (4, Recipe.NATIVE),
        (5, Recipe.OTHER),
        (6, Recipe.CURATOR),
    ]
    assert found[3].priority == 5
    assert found[1].guid == UUID


def test_names_without_a_sequence_are_not_contenders() -> None:
    assert parse_contenders(["lock", "leader", "_c_short-12", f"_c_{G1}-", "x" * 9 + "123"]) == []


def test_overflowed_sequences_parse_as_negative() -> None:
    assert parse_contenders([f"_c_{G1}--2147483648"])[0].sequence == -2147483648
    assert parse_contender("node_-000000001") is not None
    assert parse_contender("node_-000000001").sequence == -1  # type: ignore[union-attr]
    assert parse_contender("x--2147483648").sequence == -2147483648  # type: ignore[union-attr]
    assert parse_contender("x-0000000007").sequence == 7  # type: ignore[union-attr]


@pytest.mark.parametrize("recipe", [Recipe.NATIVE, Recipe.CURATOR, Recipe.KAZOO])
def test_our_names_parse_back_as_ours(recipe: Recipe) -> None:
    from election_daemon.library.recipes import new_guid

    guid = new_guid(recipe)
    c = parse_contender(node_prefix(recipe, guid, 3 if recipe is Recipe.NATIVE else 0) + "0000000042")
    assert c is not None
    assert (c.recipe, c.guid, c.sequence) == (recipe, guid, 42)


def _stat(czxid: int, owner: int = 7) -> Stat:
    return Stat(czxid, czxid, 0, owner, 0, 0, 0)


def test_genuine_drops_persistent_nodes_and_names_that_jump_the_queue() -> None:
    names = [f"_c_{G3}-0000000000", f"_c_{G1}-0000000004", f"_c_{G2}-0000000005", "p-0000000006"]
    found = list(
        zip(parse_contenders(names), [_stat(300), _stat(100), _stat(200), _stat(250, owner=0)], strict=True)
    )
    kept = [c.name for c, _ in genuine(found)]
    assert kept == [f"_c_{G1}-0000000004", f"_c_{G2}-0000000005"]


def test_genuine_drops_a_node_that_poses_behind_the_queue() -> None:
    names = [f"_c_{G1}-0000000004", f"_c_{G2}-0000000005", "x-0000000099"]
    found = list(zip(parse_contenders(names), [_stat(100), _stat(200), _stat(50)], strict=True))
    assert [c.name for c, _ in genuine(found)] == names[:2]


def test_payload_round_trips_json_and_bytes() -> None:
    assert decode_node_data(encode_node_data("h:1", {"addr": "10.0.0.1:80"})) == (
        "h:1",
        {"addr": "10.0.0.1:80"},
    )
    assert decode_node_data(encode_node_data("h:1", b"\x00\xff")) == ("h:1", b"\x00\xff")
    assert decode_node_data(encode_node_data("h:1", None)) == ("h:1", None)


def test_foreign_recipes_keep_the_identity_as_the_node_data() -> None:
    assert encode_node_data("h:1", None, Recipe.KAZOO) == b"h:1"
    assert decode_node_data(b"worker-7", Recipe.CURATOR) == ("worker-7", None)
    assert decode_node_data(b"worker-7", Recipe.NATIVE) == (None, b"worker-7")
    assert decode_node_data(b"\x1b[2J", Recipe.KAZOO) == (None, b"\x1b[2J")


def test_foreign_payload_is_returned_raw() -> None:
    assert decode_node_data(b"\xff\xfe") == (None, b"\xff\xfe")
    assert decode_node_data(b'{"no": "id"}') == (None, b'{"no": "id"}')


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id":"x","a":' + b"[" * 1500 + b"]" * 1500 + b"}",
        b'{"id":"x","a":NaN}',
        b'{"id":"x","a":1e999}',
        b'{"id":"x","a":-Infinity}',
        b'{"id":"\xff"}',
        b'{"id":"x","a":"' + b"y" * (1024 * 1024) + b'"}',
        b'{"id":"x","a":' + b"1" * 5000 + b"}",
    ],
    ids=["deep", "nan", "overflow", "infinity", "not-utf8", "too-large", "huge-int"],
)
def test_hostile_payloads_decode_as_opaque_bytes(raw: bytes) -> None:
    assert decode_node_data(raw) == (None, raw)


def test_our_data_is_held_to_the_same_limits() -> None:
    nested: object = 1
    for _ in range(40):
        nested = [nested]
    for bad in (float("nan"), float("inf"), nested, {1, 2}):
        with pytest.raises(ConfigError, match="data"):
            encode_node_data("h:1", bad)


def test_after_an_overflow_a_new_node_queues_behind_the_old_ones() -> None:
    # ZooKeeper's counter wraps to -2147483648: that node was created last, so it queues last.
    children = [f"_c_{G1}--2147483648", f"_c_{G2}-2147483646", f"_c_{G3}-2147483647"]
    assert [c.guid for c in parse_contenders(children)] == [G2, G3, G1]
