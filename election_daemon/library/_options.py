"""Every argument of :class:`~.election.Election`, checked up front (``ConfigError`` names the field)."""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from typing import Any

from election_daemon.errors import ConfigError
from election_daemon.library._zk import ZKClient
from election_daemon.library.candidacy import encode_node_data
from election_daemon.library.limits import (
    CONNECT_TIMEOUT_RANGE_S,
    SESSION_TIMEOUT_RANGE_S,
    check_identity,
    check_priority,
    check_seconds,
    default_identity,
    parse_hosts,
    validate_election_path,
)
from election_daemon.library.recipes import Recipe, our_recipe
from election_daemon.library.security import DigestAuth, TLSConfig, check_auth, check_tls
from election_daemon.library.session import Session

__all__ = ["ConnectionOptions", "ElectionOptions", "connection_options", "election_options"]


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Where and how to connect: an application's client, or our own to ``servers`` (over TLS
    unless ``tls`` is None, ``auth`` sent after each connection)."""

    servers: tuple[tuple[str, int], ...] = ()
    chroot: str | None = None
    client: ZKClient | None = None
    tls: ssl.SSLContext | None = None
    auth: tuple[DigestAuth, ...] = ()

    def open_session(self, session_timeout_s: float) -> Session:
        """The session to use (the client's shared one, or a new one of our own)."""
        return Session.open(
            servers=self.servers,
            chroot=self.chroot,
            session_timeout_s=session_timeout_s,
            client=self.client,
            tls=self.tls,
            auth=self.auth,
        )


def connection_options(
    hosts: str | None,
    client: ZKClient | None,
    *,
    tls: ssl.SSLContext | TLSConfig | None,
    tls_ca: str | os.PathLike[str] | None,
    tls_cert: str | os.PathLike[str] | None,
    tls_key: str | os.PathLike[str] | None,
    tls_verify_hostname: bool,
    auth: DigestAuth | str | None,
) -> ConnectionOptions:
    """Check the connection arguments of ``Election``/``Observer`` once.

    An application's own client (``client=``) brings its own connection: giving TLS or
    credentials too is an error rather than silently ignored.
    """
    servers: tuple[tuple[str, int], ...] = ()
    chroot: str | None = None
    if client is None:
        if not isinstance(hosts, str):
            raise ConfigError("hosts", f"give a ZooKeeper connect string or a client, not {hosts!r}")
        servers, chroot = parse_hosts(hosts)
    checked = ConnectionOptions(
        servers=servers,
        chroot=chroot,
        client=client,
        tls=check_tls(tls, ca=tls_ca, cert=tls_cert, key=tls_key, verify_hostname=tls_verify_hostname),
        auth=check_auth(auth),
    )
    if client is not None and (checked.tls is not None or checked.auth):
        raise ConfigError(
            "tls" if checked.tls is not None else "auth",
            "configure TLS and authentication on your own client; we do not change its connection",
        )
    if checked.tls is not None and not tls_verify_hostname:
        _log.warning(
            "TLS host name verification is off: any certificate the CA signed is accepted for any host"
        )
    return checked


PRIORITY_STABLE_RANGE_S = (0.0, 86400.0)
_log = logging.getLogger("election_daemon.library")


@dataclass(frozen=True, slots=True)
class ElectionOptions:
    """An election's checked arguments (the connection's are :class:`ConnectionOptions`)."""

    path: str
    identity: str
    recipe: Recipe
    payload: bytes
    """Our node's data: the identity and ``data``, as the recipe stores them."""
    session_timeout_s: float
    session_timeout_range_s: tuple[float, float] | None
    """The negotiated timeouts accepted; None: the requested one (our client) or any (theirs)."""
    connect_timeout_s: float
    priority: int
    priority_stable_s: float | None


def election_options(
    path: str,
    *,
    identity: str | None,
    data: Any,
    session_timeout_s: float | None,
    session_timeout: float | None,
    session_timeout_range_s: tuple[float, float] | None = None,
    connect_timeout_s: float,
    priority: int,
    priority_stable_s: float | None,
    recipe: Recipe | str,
) -> ElectionOptions:
    """Check every argument of ``Election(...)``; raises :class:`ConfigError` for the first bad one."""
    if session_timeout_s is not None and session_timeout is not None:
        raise ConfigError("session_timeout_s", "give session_timeout_s or session_timeout, not both")
    timeout_s = session_timeout_s if session_timeout_s is not None else session_timeout
    timeout_s = check_seconds(
        "session_timeout_s", 10.0 if timeout_s is None else timeout_s, SESSION_TIMEOUT_RANGE_S
    )
    connect_timeout_s = check_seconds("connect_timeout_s", connect_timeout_s, CONNECT_TIMEOUT_RANGE_S)
    accepted = _timeout_range(session_timeout_range_s)
    check_priority(priority)
    if priority_stable_s is not None:
        priority_stable_s = check_seconds("priority_stable_s", priority_stable_s, PRIORITY_STABLE_RANGE_S)
    checked_recipe = our_recipe(recipe)
    if checked_recipe is not Recipe.NATIVE and (priority or data is not None):
        raise ConfigError(
            "priority" if priority else "data",
            f"the {checked_recipe.value} recipe keeps only the identity in a node: no data or priority",
        )
    path = validate_election_path(path)
    identity = check_identity(default_identity() if identity is None else identity)
    return ElectionOptions(
        path=path,
        identity=identity,
        recipe=checked_recipe,
        payload=encode_node_data(identity, data, checked_recipe),
        session_timeout_s=float(timeout_s),
        session_timeout_range_s=accepted,
        connect_timeout_s=connect_timeout_s,
        priority=priority,
        priority_stable_s=priority_stable_s,
    )


def _timeout_range(value: tuple[float, float] | None) -> tuple[float, float] | None:
    field = "session_timeout_range_s"
    if value is None:
        return None
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ConfigError(field, f"give (shortest, longest) in seconds, not {value!r}")
    low = check_seconds(field, value[0], SESSION_TIMEOUT_RANGE_S)
    high = check_seconds(field, value[1], SESSION_TIMEOUT_RANGE_S)
    if low > high:
        raise ConfigError(field, f"the shortest ({low:g} s) is longer than the longest ({high:g} s)")
    return (float(low), float(high))
