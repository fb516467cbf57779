"""Every value's rule, once: the limits the library, the daemon and every command share."""

from __future__ import annotations

import pytest

from election_daemon.errors import ConfigError
from election_daemon.library import limits


@pytest.mark.parametrize("value", [0.05, 3601, True, "10", float("nan"), float("inf"), None])
def test_session_timeouts_outside_the_one_range_are_refused(value: object) -> None:
    with pytest.raises(ConfigError) as raised:
        limits.check_seconds("--session-timeout", value, limits.SESSION_TIMEOUT_RANGE_S)
    assert raised.value.field == "--session-timeout"


def test_seconds_come_back_as_floats() -> None:
    assert limits.check_seconds("t", 2, limits.SESSION_TIMEOUT_RANGE_S) == 2.0


@pytest.mark.parametrize("identity", ["", "   ", "a\nb", "é" * 128, 7, "\x1b[2J"])
def test_identities_are_1_to_255_bytes_of_printable_text(identity: object) -> None:
    with pytest.raises(ConfigError, match="id"):
        limits.check_identity(identity, "id")


def test_identity_length_is_counted_in_bytes() -> None:
    assert limits.check_identity("é" * 127) == "é" * 127  # 254 bytes
    with pytest.raises(ConfigError, match="255 bytes"):
        limits.check_identity("é" * 128)  # 256 bytes


@pytest.mark.parametrize("value", [True, 2**31, -(2**31) - 1, "1", 1.0])
def test_priorities_are_32_bit_integers(value: object) -> None:
    with pytest.raises(ConfigError, match="priority"):
        limits.check_priority(value)


def test_hosts_parse_into_servers_and_a_chroot() -> None:
    servers, chroot = limits.parse_hosts("a:1,[::1]:2,b/app/x")
    assert servers == (("a", 1), ("::1", 2), ("b", 2181))
    assert chroot == "/app/x"
    assert limits.format_servers(servers) == "a:1,[::1]:2,b:2181"


@pytest.mark.parametrize("hosts", ["", "a:0", "a:65536", "a:1,a:1", "::1:2181", "a b:1", "a/../x", "a:٣"])
def test_bad_connect_strings_are_refused(hosts: str) -> None:
    with pytest.raises(ConfigError, match="hosts"):
        limits.parse_hosts(hosts)


@pytest.mark.parametrize(
    "path", ["x", "/", "/a/", "/a//b", "/a/./b", "/zookeeper/x", "/a\x00", "/" + "a" * 1024]
)
def test_bad_election_paths_are_refused(path: str) -> None:
    with pytest.raises(ConfigError, match="path"):
        limits.validate_election_path(path)
