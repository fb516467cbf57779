"""Every value's rule, in one place: used by the library, the daemon, every subcommand and verify.

Each check takes the name of the field it reports (``"session_timeout_s"`` for the library,
``"--session-timeout"`` for the command line) and raises :class:`ConfigError` with one line.
Payload limits (size, depth, strict JSON) live beside their codec in :mod:`.payload`.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import re
import socket
from collections.abc import Sequence
from typing import TypeVar

from election_daemon.errors import ConfigError

__all__ = [
    "CONNECT_TIMEOUT_RANGE_S",
    "DEFAULT_ZOOKEEPER_PORT",
    "MAX_IDENTITY_BYTES",
    "MAX_PATH_BYTES",
    "PRIORITY_RANGE",
    "SESSION_TIMEOUT_RANGE_S",
    "check_host_name",
    "check_identity",
    "check_priority",
    "check_seconds",
    "choice",
    "default_identity",
    "format_servers",
    "parse_host_port",
    "parse_hosts",
    "show",
    "validate_election_path",
    "znode_path_problem",
]

MAX_PATH_BYTES = 1024
"""Longest election path (and chroot) accepted, in UTF-8 bytes."""

MAX_IDENTITY_BYTES = 255
"""Longest identity accepted, in UTF-8 bytes (what a foreign recipe's node data can show)."""

SESSION_TIMEOUT_RANGE_S = (0.1, 3600.0)
"""Session timeouts one may request; the server clamps them into its own range."""

CONNECT_TIMEOUT_RANGE_S = (0.1, 86400.0)
PRIORITY_RANGE = (-(2**31), 2**31 - 1)
DEFAULT_ZOOKEEPER_PORT = 2181
_SHOW_LIMIT = 60

# The characters ZooKeeper's PathUtils.validatePath refuses; lone surrogates (undecodable bytes
# from argv) fall in the D800-F8FF range.
_FORBIDDEN_ZNODE_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\uffff]")
# RFC 1123 labels, plus '_', which container runtimes put in service names.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_BRACKETED_HOST = re.compile(r"\[(?P<host>[^\]]*)\](?::(?P<port>.*))?")
_PORT = re.compile(r"[0-9]{1,5}")

_E = TypeVar("_E", bound=enum.StrEnum)


def default_identity() -> str:
    """``host:pid``, the identity a participant gets unless told otherwise."""
    return f"{socket.gethostname()}:{os.getpid()}"


def show(value: object) -> str:
    """``repr(value)``, cut short for one-line error messages."""
    text = repr(value)
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 3] + "..."


def choice(flag: str, kind: type[_E], value: str) -> _E:
    """The member of ``kind`` named ``value``."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(member.value) for member in kind)
        raise ConfigError(flag, f"must be one of {allowed}, got {show(value)}") from None


def check_seconds(flag: str, value: object, bounds: tuple[float, float]) -> float:
    """``value`` as float seconds if it is a finite number (not a bool) within ``bounds``."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(flag, f"must be a number of seconds, got {show(value)}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(flag, f"must be between {low:g} and {high:g} seconds, got {show(value)}")
    return float(value)


def check_priority(value: object, field: str = "priority") -> int:
    """``value`` if it is a 32-bit integer (not a bool)."""
    low, high = PRIORITY_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, f"must be an integer between {low} and {high}, got {show(value)}")
    return value


def check_identity(identity: object, field: str = "identity") -> str:
    """``identity`` if it is 1 to 255 UTF-8 bytes of printable text, not only whitespace."""
    if not isinstance(identity, str):
        raise ConfigError(field, f"must be a string, got {show(identity)}")
    if not identity:
        raise ConfigError(field, "must not be empty")
    if not identity.strip():
        raise ConfigError(field, f"must not be only whitespace, got {show(identity)}")
    if not identity.isprintable():
        raise ConfigError(field, f"must contain only printable characters, got {show(identity)}")
    size = len(identity.encode("utf-8", "surrogatepass"))
    if size > MAX_IDENTITY_BYTES:
        raise ConfigError(field, f"must be at most {MAX_IDENTITY_BYTES} bytes, got {size}: {show(identity)}")
    return identity


def validate_election_path(path: str, field: str = "path") -> str:
    """Return ``path`` if it can be an election path; refuse up front what ZooKeeper would refuse
    later (or treat as another path), and the ``/zookeeper`` subtree.

    :raises ConfigError: naming ``field``.
    """
    problem = znode_path_problem(path)
    if problem is not None:
        raise ConfigError(field, f"{problem}, got {show(path)}")
    return path


def znode_path_problem(path: object) -> str | None:  # noqa: PLR0911 (one return per rule, in order)
    """Why ``path`` cannot be a znode path we use, or None."""
    if not isinstance(path, str):
        return "must be a string"
    if not path.startswith("/"):
        return "must be absolute (start with '/')"
    if path == "/":
        return "must not be the root"
    if path.endswith("/"):
        return "must not end with '/'"
    segments = path[1:].split("/")
    if "" in segments:
        return "must not contain an empty segment ('//')"
    if "." in segments or ".." in segments:
        return "must not contain '.' or '..' segments"
    bad = _FORBIDDEN_ZNODE_CHAR.search(path)
    if bad is not None:
        return f"must not contain the character U+{ord(bad.group()):04X}"
    if segments[0] == "zookeeper":
        return "must not be under /zookeeper, which ZooKeeper reserves"
    if len(path.encode()) > MAX_PATH_BYTES:
        return f"must be at most {MAX_PATH_BYTES} bytes"
    return None


def parse_hosts(hosts: str, field: str = "hosts") -> tuple[tuple[tuple[str, int], ...], str | None]:
    """Parse a ZooKeeper connect string into its (host, port) pairs and its chroot (or ``None``).

    Ports default to 2181; IPv6 hosts come back without their brackets.

    :raises ConfigError: naming ``field``.
    """
    if not isinstance(hosts, str):
        raise ConfigError(field, f"must be a string, got {show(hosts)}")
    server_list, slash, chroot_rest = hosts.partition("/")
    chroot = slash + chroot_rest if slash else None
    if not server_list:
        raise ConfigError(field, f"must list at least one host:port, got {show(hosts)}")
    servers: list[tuple[str, int]] = []
    for entry in server_list.split(","):
        if not entry:
            raise ConfigError(field, f"must not have an empty entry, got {show(hosts)}")
        try:
            server = parse_host_port(entry, default_port=DEFAULT_ZOOKEEPER_PORT, min_port=1)
        except ValueError as exc:
            raise ConfigError(field, f"{exc} in {show(hosts)}") from None
        if server in servers:
            raise ConfigError(field, f"lists {show(entry)} twice in {show(hosts)}")
        servers.append(server)
    problem = None if chroot is None else znode_path_problem(chroot)
    if problem is not None:
        raise ConfigError(field, f"chroot {problem}, got {show(chroot)}")
    return tuple(servers), chroot


def format_servers(servers: Sequence[tuple[str, int]]) -> str:
    """The connect string of ``servers`` without chroot, every port explicit and IPv6 bracketed,
    as aiozk's own parser needs it."""
    return ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in servers)


def parse_host_port(entry: str, *, default_port: int | None, min_port: int) -> tuple[str, int]:
    """Parse ``host[:port]`` or ``[ipv6][:port]``; raise ValueError with a one-line reason."""
    bracketed = _BRACKETED_HOST.fullmatch(entry)
    if bracketed is not None:
        host, port_text = bracketed["host"], bracketed["port"]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv6 address {show(host)}") from None
    elif entry.startswith("["):
        raise ValueError(f"malformed bracketed address {show(entry)}")
    else:
        host, colon, port_text = entry.rpartition(":")
        if not colon:
            host, port_text = entry, None
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets, as in [::1]:2181, got {show(entry)}")
        check_host_name(host)
    if port_text is None:
        if default_port is None:
            raise ValueError(f"missing port in {show(entry)}")
        return host, default_port
    if not _PORT.fullmatch(port_text) or not min_port <= int(port_text) <= 65535:
        raise ValueError(f"port must be {min_port}..65535, got {show(port_text)}")
    return host, int(port_text)


def check_host_name(host: str) -> None:
    """Refuse (ValueError) what is neither an IPv4 address nor an RFC 1123 host name."""
    if not host:
        raise ValueError("empty host")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv4 address {show(host)}") from None
        return
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"invalid host name {show(host)}")
