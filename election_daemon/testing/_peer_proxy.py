"""The proxy for a ZooKeeper server's leader-election port, which keeps connect-backs on proxies too.

A server that dials a peer with a higher id opens with a handshake advertising its own
election address; the peer drops that connection and dials back to the advertised address.
That address is where the server really listens, so the connection back would bypass the
proxies and a cut-off server could still vote. This proxy rewrites the advertised address to
the dialing server's host name, which the peer's JVM resolves (through its own hosts file) to
the proxy for the reverse direction.
"""

from __future__ import annotations

import asyncio
import struct

from election_daemon.testing._proxy import TcpProxy

__all__ = ["ElectionPortProxy"]

# QuorumCnxManager.PROTOCOL_VERSION_V1 and _V2: both are followed by the dialer's id, then a
# length-prefixed "host:port|host:port" string.
_PROTOCOL_VERSIONS = frozenset({-65536, -65535})
_LONG = struct.Struct("!q")
_INT = struct.Struct("!i")
_MAX_ADDRESS_BYTES = 2048  # QuorumCnxManager.maxBuffer


class ElectionPortProxy(TcpProxy):
    """Forwards to a server's election port; the dialer's handshake advertises ``advertised``."""

    def __init__(self, target_port: int, *, listen_host: str, advertised: str) -> None:
        super().__init__("127.0.0.1", target_port, listen_host=listen_host, listen_port=target_port)
        self._advertised = advertised.encode("ascii")

    async def _opening(self, client_reader: asyncio.StreamReader) -> bytes:
        version = await client_reader.readexactly(_LONG.size)
        if _LONG.unpack(version)[0] not in _PROTOCOL_VERSIONS:
            return version  # a protocol without an advertised address: nothing to rewrite
        sid = await client_reader.readexactly(_LONG.size)
        length_bytes = await client_reader.readexactly(_INT.size)
        (length,) = _INT.unpack(length_bytes)
        if not 0 < length <= _MAX_ADDRESS_BYTES:
            return version + sid + length_bytes  # malformed: let the server reject it
        await client_reader.readexactly(length)
        return version + sid + _INT.pack(len(self._advertised)) + self._advertised
