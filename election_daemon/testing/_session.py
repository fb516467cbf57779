"""Forcing a real, server-side expiry of a ZooKeeper session, the way the ZooKeeper FAQ describes."""

from __future__ import annotations

import socket
import struct
import time

from election_daemon.errors import ConnectTimeoutError, SessionLostError
from election_daemon.library._zk import close_session_request, connect_request, connect_response_session_id

__all__ = ["expire_session"]

_LENGTH = struct.Struct("!i")
_REPLY_HEADER = struct.Struct("!iqi")  # xid, zxid, error code
_CLOSE_XID = 1
# The server clamps it to its own bounds; the session is closed at once anyway.
_REQUESTED_TIMEOUT_MS = 30000
_RETRY_INTERVAL_S = 0.05


def expire_session(hosts: str, session_id: int, password: bytes, *, timeout_s: float = 10.0) -> None:
    """Make ZooKeeper end a live session now, as if its client had gone silent past its timeout.

    Connects a second time with the session's id and password, then closes that connection's
    session: ZooKeeper ends the session for good and deletes its ephemeral nodes, and the
    original client learns on its next contact that its session expired. Returns once the
    closing is committed. With aiozk the credentials are ``client.session.session_id`` and
    ``client.session.password``; with kazoo, ``client.client_id``.

    Raises SessionLostError if ZooKeeper does not know the session (already expired, or a
    wrong password), ConnectTimeoutError if no server of ``hosts`` serves within ``timeout_s``.
    """
    servers = _parse_hosts(hosts)
    deadline = time.monotonic() + timeout_s
    closed_once = False
    while True:
        for host, port in servers:
            try:
                known = _close_session(
                    host, port, session_id, password, timeout_s=max(deadline - time.monotonic(), 0.1)
                )
            except OSError:
                continue  # down, or not serving: a server without a quorum drops the connection
            if not known:
                if closed_once:
                    return  # what we closed stayed closed
                raise SessionLostError(
                    f"ZooKeeper does not know session {session_id:#x}: expired, or wrong password"
                )
            # The session's own client may reattach before our close is processed (attaching
            # moves the session between connections), so only a server that no longer knows
            # the session proves it ended: go round again until one says so.
            closed_once = True
            break
        if time.monotonic() >= deadline:
            raise ConnectTimeoutError(
                f"no ZooKeeper server of {hosts} ended the session within {timeout_s:g} s"
            )
        time.sleep(_RETRY_INTERVAL_S)


def _close_session(host: str, port: int, session_id: int, password: bytes, *, timeout_s: float) -> bool:
    """Reattach to the session on one server and close it; False if the server rejected the session."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        _send(sock, connect_request(session_id, password, timeout_ms=_REQUESTED_TIMEOUT_MS))
        if connect_response_session_id(_receive(sock)) == 0:
            return False
        _send(sock, close_session_request(_CLOSE_XID))
        try:
            _xid, _zxid, error_code = _REPLY_HEADER.unpack_from(_receive(sock))
        except OSError:
            return True  # the caller checks whether the session really ended
        if error_code != 0:
            raise ConnectionError(f"closing the session failed with ZooKeeper error {error_code}")
    return True


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _receive(sock: socket.socket) -> bytes:
    (length,) = _LENGTH.unpack(_receive_exactly(sock, _LENGTH.size))
    return _receive_exactly(sock, length)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("ZooKeeper closed the connection")
        data += chunk
    return bytes(data)


def _parse_hosts(hosts: str) -> list[tuple[str, int]]:
    """``host:port,host:port[/chroot]`` as (host, port) pairs."""
    servers = []
    for entry in hosts.split("/", 1)[0].split(","):
        host, _, port = entry.strip().rpartition(":")
        servers.append((host.strip("[]"), int(port)) if host else (entry.strip(), 2181))
    return servers
