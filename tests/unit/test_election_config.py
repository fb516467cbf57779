"""The library's constructor checks every argument once, up front, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from election_daemon import ConfigError, Election
from election_daemon.library._pacing import TokenBucket

HOSTS = "127.0.0.1:2181"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"connect_timeout_s": "5"}, "connect_timeout_s"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"identity": 123}, "identity"),
        ({"identity": "   "}, "identity"),
        ({"identity": ""}, "identity"),
        ({"identity": "é" * 200}, "identity"),  # 400 bytes
        ({"identity": "a\nb"}, "identity"),
        ({"priority": True}, "priority"),
        ({"priority": 2**31}, "priority"),
        ({"priority": "1"}, "priority"),
        ({"session_timeout_s": True}, "session_timeout_s"),
        ({"session_timeout_s": 0.05}, "session_timeout_s"),
        ({"session_timeout_s": "10"}, "session_timeout_s"),
        ({"priority_stable_s": -1}, "priority_stable_s"),
        ({"data": float("nan")}, "data"),
        ({"data": {"a": float("inf")}}, "data"),
        ({"data": "x" * (1024 * 1024)}, "data"),
        ({"data": object()}, "data"),
        ({"recipe": "zookeeper"}, "recipe"),
        ({"recipe": "other"}, "recipe"),
        ({"recipe": "kazoo", "data": {"a": 1}}, "data"),
        ({"recipe": "curator", "priority": 3}, "priority"),
    ],
)
def test_every_wrong_argument_is_a_config_error_naming_its_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Election(HOSTS, "/e", **kwargs)
    assert raised.value.field == field


def test_hosts_and_path_must_be_strings() -> None:
    with pytest.raises(ConfigError, match="hosts"):
        Election(None, "/e")
    with pytest.raises(ConfigError, match="path"):
        Election(HOSTS, 7)  # type: ignore[arg-type]


def test_good_arguments_are_kept() -> None:
    e = Election(HOSTS, "/e", identity="a", priority=3, session_timeout_s=2, recipe="native", data=[1, 2])
    assert (e.identity, e.priority, e.requested_session_timeout_s, e.recipe.value) == ("a", 3, 2.0, "native")
    assert Election(HOSTS, "/e", identity="k", recipe="kazoo").recipe.value == "kazoo"


def test_the_move_budget_is_a_burst_then_a_steady_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(3, 0.5, clock=lambda: now[0])
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.try_take() and not bucket.try_take()
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)
    now[0] += 10
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
