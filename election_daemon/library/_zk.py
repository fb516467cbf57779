"""The aiozk adapter: the one module that touches aiozk, fills its gaps and converts its errors.

What it adds to aiozk 0.32 (see shared research ``aiozk.md``):

- every request goes through :meth:`ZooKeeper._call`, which records the monotonic *send*
  time of the last request the server answered: the basis of our own lease;
- a hardened connection for the clients we create: the ``srvr`` handshake and the TCP
  connect are bounded in time (aiozk waits forever on a server that accepts but never
  answers, so a silently cut connection could never recover), and a connection closed by
  the server suspends the session at once instead of waiting up to T for a ping to fail;
- reconnection rounds retry with a short, bounded backoff (aiozk's grows to 60 s);
- only the server saying "expired" ends a session: aiozk also drops the session when a
  handshake fails (a server still electing its leader), losing leadership for nothing;
- watch futures that unregister themselves when abandoned, and a watch table that keeps no
  empty entries (aiozk's ``defaultdict`` grows a key for every event nobody waits for);
- no entries in aiozk's ``stat_cache``, which keeps the stat of every path ever answered and
  evicts nothing: our requests go to the session directly;
- a bound on the election requests in flight per client (:data:`MAX_IN_FLIGHT`), so that the
  lease probe waits behind a bounded number of them however many elections share the client;
- a count of the requests sent, by kind (:attr:`ZooKeeper.requests_sent`);
- aiozk exceptions converted to :mod:`election_daemon.errors` at this boundary;
- TLS (aiozk speaks plain TCP only): both of aiozk's connections (the ``srvr`` probe and the
  session's) go through an :class:`ssl.SSLContext`, the host of the connect string as the
  server name checked against the certificate;
- authentication: ``addauth`` of each credential after every (re)connection, before the
  session is reported connected, so before any other request of ours;
- failures that retrying cannot cure end :meth:`ZooKeeper.start` at once with one line:
  :class:`TLSError` (a certificate refused either way, or TLS spoken to a plain port or the
  reverse, found out by a second probe) and :class:`AuthFailedError`. Once a session was
  established they are retried instead (a server may be renewing its certificate), the
  session suspended meanwhile.

Read-only sessions are never requested; a user-supplied client that reaches one is reported
as such so that the liveness layer treats it as suspended.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import aiozk
from aiozk import exc as zk_exc
from aiozk import protocol
from aiozk.connection import Connection
from aiozk.session import Session as _AiozkSession
from aiozk.states import States

from election_daemon.errors import (
    AuthFailedError,
    ConnectionLossError,
    ConnectTimeoutError,
    DataTooLargeError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    SessionLostError,
    TLSError,
    ZooKeeperError,
)
from election_daemon.library.acl import AclEntry
from election_daemon.library.security import DigestAuth

__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_WRITE_BYTES",
    "GuardFailedError",
    "Stat",
    "ZKClient",
    "ZkState",
    "ZooKeeper",
    "close_session_request",
    "connect_request",
    "connect_response_session_id",
    "first_of",
]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

# jute.maxbuffer defaults to 0xfffff bytes for a whole packet; a larger one makes the server
# drop the connection, which looks like a network fault. Refuse it before sending. This is the
# wire's limit for any write (guarded_set of a user's value); what we publish in our own
# node is held to payload.MAX_DATA_BYTES, lower, so that every reader can decode it.
MAX_WRITE_BYTES = 0xFFFFF - 4096

# Election requests in flight per client. ZooKeeper answers a session's requests in order, so a
# probe sent behind N of them waits for all N: ten thousand elections rejoining at once would
# delay it past the lease (the collapse of issue 11). With this bound the probe waits behind at
# most this many, about 10 ms of server time on loopback; throughput is unchanged, since a
# pipeline this deep already keeps the server busy. Probes themselves are not held back.
MAX_IN_FLIGHT = 128

# aiozk's session states and client, re-exported so that nothing else imports aiozk: an
# application that shares its client with elections (``client=``) passes an aiozk.ZKClient.
ZkState = States
ZKClient: TypeAlias = aiozk.ZKClient


class GuardFailedError(ZooKeeperError):
    """A guarded write was refused because its guard node is gone."""


@dataclass(frozen=True, slots=True)
class Stat:
    """The parts of a znode's stat that the election uses."""

    czxid: int
    mzxid: int
    version: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    ctime_ms: int
    """Creation time in milliseconds since the epoch, by the clock of the server that created it."""

    @classmethod
    def _from_aiozk(cls, stat: protocol.Stat) -> Stat:
        return cls(
            czxid=stat.created_zxid,
            mzxid=stat.last_modified_zxid,
            version=stat.version,
            ephemeral_owner=stat.ephemeral_owner,
            data_length=stat.data_length,
            num_children=stat.num_children,
            ctime_ms=stat.created,
        )


class _SessionClosedRequireAuth(zk_exc.ResponseError):
    """ZooKeeper's SESSIONCLOSEDREQUIRESASLAUTH: enforce.auth.enabled, and the session has no
    identity of the schemes required.

    aiozk does not know the code, and its fallback (``UnknownError``) prints it on stdout,
    which would break the daemon's JSON lines. Defining the class registers it with aiozk's
    own table of response errors (its metaclass does), so aiozk raises it instead.
    """

    error_code = -124


@contextlib.contextmanager
def _converted(what: str) -> Iterator[None]:
    """Convert aiozk's exceptions into ours, keeping the original as ``__cause__``."""
    try:
        yield
    except zk_exc.NoNode as e:
        raise NoNodeError(f"{what}: no such node") from e
    except zk_exc.NodeExists as e:
        raise NodeExistsError(f"{what}: node exists") from e
    except (zk_exc.NoAuth, zk_exc.AuthFailed, zk_exc.InvalidACL) as e:
        raise NoAuthError(f"{what}: not permitted by ZooKeeper ({type(e).__name__})") from e
    except _SessionClosedRequireAuth as e:
        raise NoAuthError(
            f"{what}: the server requires authenticated sessions (give credentials or a client certificate)"
        ) from e
    except zk_exc.UnknownError as e:
        raise ZooKeeperError(f"{what}: error code {e.error_code}") from e
    except (zk_exc.SessionExpired, zk_exc.SessionLost, zk_exc.SessionMoved) as e:
        raise SessionLostError(f"{what}: session lost ({type(e).__name__})") from e
    except (zk_exc.ConnectError, zk_exc.ConnectionLoss, zk_exc.TimeoutError, zk_exc.FailedRetry) as e:
        raise ConnectionLossError(f"{what}: connection lost") from e
    except zk_exc.ZKError as e:
        raise ZooKeeperError(f"{what}: {type(e).__name__}") from e


# How long a probe that tells a TLS port from a plain one may take.
_PROBE_S = 1.0
_PLAIN_TO_TLS = "it speaks TLS on this port: configure TLS (a CA bundle) to connect"


class _SpeaksTLSError(Exception):
    """A plain connection reached a port that speaks TLS."""


class _HandshakeFailedError(Exception):
    """The server dropped the connection during the session handshake."""


class _HardenedConnection(Connection):  # type: ignore[misc, unused-ignore]  # (without the stub)
    """An aiozk connection whose loss is reported at once instead of at the next failed ping."""

    def __init__(
        self,
        *args: Any,
        on_closed: Callable[[_HardenedConnection], None],
        ssl_context: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_closed = on_closed
        self._ssl = ssl_context

    async def _make_handshake(self) -> None:
        # aiozk indexes the peer's address, which is None once a dying server has reset the
        # connection: a TypeError that would end the repair loop, and with it the session.
        if self.writer is None or self.writer.transport.get_extra_info("peername") is None:
            raise ConnectionResetError(f"{self.host}:{self.port} closed the connection")
        await super()._make_handshake()

    async def connect(self) -> None:
        if self._ssl is None:
            await super().connect()
            return
        # aiozk's connect(), over TLS: the srvr probe on one connection, the session on another.
        self.reader, self.writer = await self._open_tls()
        try:
            await self._make_handshake()
        finally:
            self.writer.close()
        self.reader, self.writer = await self._open_tls()

    async def _open_tls(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self._ssl,
            server_hostname=self.host,
            ssl_handshake_timeout=self.read_timeout,
        )

    async def read_loop(self) -> None:
        await super().read_loop()
        # aiozk's loop returns quietly on EOF, leaving requests pending until the next ping
        # times out (up to T later); fail them now so the session reconnects elsewhere.
        if not self.closing:
            self.abort()
            self._on_closed(self)


class _HardenedSession(_AiozkSession):  # type: ignore[misc, unused-ignore]  # (without the stub)
    """An aiozk session with bounded connection attempts and a short reconnect backoff."""

    max_backoff_s = 1.0
    # aiozk's own attributes, declared for the type checker.
    timeout: float
    last_zxid: int | None
    session_id: int | None
    password: bytes

    def __init__(
        self,
        *args: Any,
        ssl_context: ssl.SSLContext | None = None,
        auth: tuple[DigestAuth, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.ssl_context = ssl_context
        self.auth = auth
        self.established = False
        """A session was had once: from then on every failure is retried."""
        self.fatal: asyncio.Future[ZooKeeperError] | None = None
        """Set by :meth:`ZooKeeper.start`: resolved with the error that retrying cannot cure."""
        self._tls_failures: dict[tuple[str, int], str] = {}
        self._probed: set[tuple[str, int]] = set()
        self._auth_failure_logged = False

    def _give_up(self, error: ZooKeeperError) -> None:
        if not self.established and self.fatal is not None and not self.fatal.done():
            self.fatal.set_result(error)

    async def make_connection(self, host: str, port: int) -> Connection | None:
        conn = _HardenedConnection(
            host,
            port,
            watch_handler=self.event_dispatch,
            read_timeout=self.read_timeout,
            on_closed=self._connection_closed,
            ssl_context=self.ssl_context,
        )
        # Java and kazoo give each host T/n to answer; aiozk's handshake has no limit at all.
        attempt_s = max(self.timeout / max(len(self.hosts), 1), 0.5)
        connecting = asyncio.ensure_future(asyncio.wait_for(conn.connect(), attempt_s))
        try:
            if not self.established and self.ssl_context is None and (host, int(port)) not in self._probed:
                # A TLS port never answers a plain "srvr": it waits for the rest of a record.
                # Check for one while waiting, rather than after the whole attempt.
                done, _ = await asyncio.wait([connecting], timeout=_PROBE_S)
                if not done:
                    self._probed.add((host, int(port)))
                    if await _speaks_tls(host, int(port)):
                        raise _SpeaksTLSError
            await connecting
        except _SpeaksTLSError:
            connecting.cancel()
            self._tls_failures[host, int(port)] = _PLAIN_TO_TLS
            with contextlib.suppress(Exception):
                if conn.writer is not None:
                    conn.writer.close()
            return None
        except (TimeoutError, OSError, ConnectionError, zk_exc.ZKError, ValueError, TypeError) as e:
            # Whatever one server's attempt raises, the repair loop must go on to the next:
            # a loop that dies leaves the session unrepaired for good.
            _log.info("cannot connect to %s:%s: %s", host, port, _describe(e))
            with contextlib.suppress(Exception):
                if conn.writer is not None:
                    conn.writer.close()
            if not self.established:
                cause = await self._tls_cause(host, int(port), e)
                if cause is not None:
                    self._tls_failures[host, int(port)] = cause
            return None
        finally:
            if not connecting.done():
                connecting.cancel()
        self._tls_failures.pop((host, int(port)), None)
        return conn

    async def _tls_cause(self, host: str, port: int, error: BaseException) -> str | None:
        """Why ``error`` is a TLS failure that retrying will not cure, if it is one."""
        cause = _certain_tls_cause(error)
        if cause is not None:
            return cause
        # The ambiguous ones: a TLS server keeps waiting for the rest of a record after a
        # plain "srvr"; a plain server drops a ClientHello. A second connection tells.
        if (host, port) in self._probed or not isinstance(error, (TimeoutError, OSError, ConnectionError)):
            return None
        self._probed.add((host, port))
        if self.ssl_context is not None:
            if await _speaks_plain(host, port):
                return "it is a plain port, not TLS: it answered in clear"
        elif await _speaks_tls(host, port):
            return _PLAIN_TO_TLS
        return None

    async def find_server(self, allow_read_only: bool) -> None:
        backoff_s = 0.05
        conn = None
        while conn is None:
            for host, port in random.sample(self.hosts, len(self.hosts)):
                conn = await self.make_connection(host, port)
                if conn is not None and conn.start_read_only and not allow_read_only:
                    task = asyncio.create_task(conn.close(self.timeout))
                    task.add_done_callback(_ignore_result)
                    conn = None
                if conn is not None:
                    break
            if conn is None:
                if self._tls_failures and len(self._tls_failures) == len(set(self.hosts)):
                    self._give_up(
                        TLSError(
                            "TLS with ZooKeeper failed: "
                            + "; ".join(f"{h}:{p}: {cause}" for (h, p), cause in self._tls_failures.items())
                        )
                    )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
        old: Connection | None = getattr(self, "conn", None)
        self.conn = conn
        if old is not None:
            task = asyncio.create_task(old.close(self.timeout))
            task.add_done_callback(_ignore_result)

    async def repair_loop(self) -> None:
        # aiozk's loop ends the session whenever a handshake fails, for instance when the
        # server is still electing its ZooKeeper leader and drops us, and then silently opens
        # a new one: a live session, its nodes and leadership thrown away. Here only the server
        # saying "expired" ends the session; any other failure tries the next server with it.
        backoff_s = 0.05
        while not self.closing:
            await self.state.wait_for(States.SUSPENDED, States.LOST)
            if self.closing:
                break
            await self.find_server(allow_read_only=self.allow_read_only)
            conn = self.conn
            assert conn is not None  # find_server() returns only with a connection
            try:
                await asyncio.wait_for(
                    self._handshake(conn), max(self.timeout / max(len(self.hosts), 1), 0.5)
                )
            except zk_exc.SessionLost:
                conn.abort(zk_exc.SessionLost)
                await conn.close(self.timeout)
                self.session_id = None
                self.password = b"\x00"
                continue
            except (TimeoutError, _HandshakeFailedError, OSError):
                conn.abort(zk_exc.ConnectError)
                await conn.close(self.timeout)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
                continue
            if self.auth:
                # The replies to addauth need the read loop; the state says CONNECTED only
                # after them, so no request of ours can overtake them.
                conn.start_read_loop()
                try:
                    await asyncio.wait_for(
                        self._authenticate(conn), max(self.timeout / max(len(self.hosts), 1), 0.5)
                    )
                except zk_exc.AuthFailed:
                    conn.abort(zk_exc.ConnectError)
                    await conn.close(self.timeout)
                    self._auth_failed(conn)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, self.max_backoff_s)
                    continue
                except (TimeoutError, OSError, zk_exc.ZKError):
                    conn.abort(zk_exc.ConnectError)
                    await conn.close(self.timeout)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, self.max_backoff_s)
                    continue
            backoff_s = 0.05
            self.established = True
            self.state.transition_to(States.READ_ONLY if conn.start_read_only else States.CONNECTED)
            if not self.auth:
                conn.start_read_loop()
            await self.set_existing_watches()

    async def _authenticate(self, conn: Connection) -> None:
        for credential in self.auth:
            # Built in the call: the password is in no local variable of this frame.
            await conn.send(protocol.AuthRequest(type=0, scheme=credential.scheme, auth=credential.wire()))

    def _auth_failed(self, conn: Connection) -> None:
        users = ", ".join(repr(c.user) for c in self.auth)
        error = AuthFailedError(
            f"ZooKeeper {conn.host}:{conn.port} rejected the digest credentials of user {users}"
        )
        if not self.established:
            self._give_up(error)
        elif not self._auth_failure_logged:
            self._auth_failure_logged = True
            _log.error("%s; retrying, the session suspended", error)

    async def _handshake(self, conn: Connection) -> None:
        reply = await conn.send_connect(
            protocol.ConnectRequest(
                protocol_version=0,
                last_seen_zxid=self.last_zxid or 0,
                timeout=int((self.timeout or 0) * 1000),
                session_id=self.session_id or 0,
                password=self.password,
                read_only=self.allow_read_only,
            )
        )
        if reply is None:
            # Dropped mid-handshake: not serving yet, or behind our last zxid. Not an expiry.
            raise _HandshakeFailedError
        zxid, response = reply
        if response.session_id == 0:
            if self.state.current_state != States.LOST:
                self.state.transition_to(States.LOST)
            raise zk_exc.SessionLost()
        self.last_zxid = zxid
        self.session_id = response.session_id
        self.password = response.password
        self.timeout = response.timeout / 1000

    def _connection_closed(self, conn: Connection) -> None:
        if conn is self.conn and self.state.current_state in (States.CONNECTED, States.READ_ONLY):
            self.state.transition_to(States.SUSPENDED)


def _certain_tls_cause(error: BaseException) -> str | None:
    """What a TLS error that needs no probe to be understood says, in words."""
    if isinstance(error, ssl.SSLCertVerificationError):
        message = str(error.verify_message or error.reason or error)
        if "mismatch" in message:
            return f"its certificate is not for this host ({message.rstrip('.')})"
        if "expired" in message:
            return f"its certificate has expired ({message})"
        return f"its certificate is not trusted ({message}): check the CA bundle"
    if isinstance(error, ssl.SSLError) and "ALERT" in str(error.reason or ""):
        alert = str(error.reason).partition("ALERT_")[2].lower().replace("_", " ")
        return (
            f"it refused the TLS handshake (alert: {alert}): our client certificate is missing, "
            "expired or not signed by a CA it trusts"
        )
    if isinstance(error, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(error.reason or ""):
        return "it does not speak TLS on this port (a plain port?)"
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    return type(error).__name__


async def _speaks_plain(host: str, port: int) -> bool:
    """Whether ``host:port`` answers ``srvr`` in clear like a ZooKeeper server."""
    try:
        async with asyncio.timeout(_PROBE_S):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"srvr")
                answer = await reader.read(64)
            finally:
                writer.close()
    except (TimeoutError, OSError):
        return False
    return (
        answer.startswith(b"Zookeeper version")
        or b"not executed because it is not in the whitelist" in answer
    )


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether ``host:port`` completes (or refuses with an alert) a TLS handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(_PROBE_S):
            _reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=None)
            writer.close()
    except ssl.SSLError as e:
        return "ALERT" in str(e.reason or "")
    except (TimeoutError, OSError):
        return False
    return True


def _host_port(host: str, port: object) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _WatchTable(dict[tuple[int, str], set[Callable[[str], None]]]):
    """aiozk's table of watch callbacks, without its growth.

    aiozk keeps a ``defaultdict(set)``: dispatching an event that nobody waits for (the deletion
    of a node whose watch we gave up) stores an empty set under its key, forever. Here a missing
    key reads as an empty set that joins the table only once a callback is added to it, and
    aiozk's ``pop`` of a key that was never stored is harmless.
    """

    def __missing__(self, key: tuple[int, str]) -> set[Callable[[str], None]]:
        return _PendingEntry(self, key)

    def pop(self, key: tuple[int, str], *default: Any) -> Any:
        return super().pop(key, *(default or (None,)))


class _PendingEntry(set[Callable[[str], None]]):
    """An empty entry of a :class:`_WatchTable`, stored on its first ``add``."""

    def __init__(self, table: _WatchTable, key: tuple[int, str]) -> None:
        super().__init__()
        self._table = table
        self._key = key

    def add(self, callback: Callable[[str], None]) -> None:
        entry = self._table.setdefault(self._key, set())
        entry.add(callback)


class ZooKeeper:
    """A started or startable ZooKeeper client, as the election needs it.

    Wraps an ``aiozk.ZKClient``. Built with :meth:`create` it owns a hardened client;
    :meth:`wrap` adopts one the application made (many elections may share it).
    """

    def __init__(self, client: ZKClient, *, owns_client: bool) -> None:
        self.client = client
        self.owns_client = owns_client
        session = client.session
        if not isinstance(session.watch_callbacks, _WatchTable):
            table = _WatchTable((k, v) for k, v in session.watch_callbacks.items() if v)
            session.watch_callbacks = table
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.requests_sent: collections.Counter[str] = collections.Counter()
        """Requests sent through this client by aiozk request class less ``Request``
        (``Create2``, ``GetChildren2``, ``GetData``, ``Transaction``, ...): what the benchmarks
        and the request-count tests read. aiozk's own pings and watch re-arming are not in it."""
        # Monotonic send time of the last request the server answered: the lease's basis.
        self.last_answered_send: float | None = None
        self._answered_session: int | None = None

    @classmethod
    def create(
        cls,
        servers: str,
        *,
        chroot: str | None,
        session_timeout_s: float,
        tls: ssl.SSLContext | None = None,
        auth: tuple[DigestAuth, ...] = (),
    ) -> ZooKeeper:
        """Build (not start) a hardened client that never accepts a read-only session.

        ``servers`` is a chroot-less list with explicit ports (``config.format_servers``);
        ``tls`` makes every connection TLS; ``auth`` is sent after every connection.
        """
        client = aiozk.ZKClient(
            servers, chroot=chroot, session_timeout=session_timeout_s, allow_read_only=False
        )
        client.session = _HardenedSession(
            servers,
            session_timeout_s,
            retry_policy=None,
            allow_read_only=False,
            read_timeout=None,
            ssl_context=tls,
            auth=auth,
        )
        return cls(client, owns_client=True)

    @classmethod
    def wrap(cls, client: ZKClient) -> ZooKeeper:
        return cls(client, owns_client=False)

    # -- session ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        return str(self.client.session.state.current_state)

    @property
    def session_id(self) -> int | None:
        sid = self.client.session.session_id
        return int(sid) if sid else None

    @property
    def session_password(self) -> bytes:
        return bytes(self.client.session.password)

    @property
    def negotiated_timeout_s(self) -> float:
        """The session timeout the server granted (the requested one before the handshake)."""
        return float(self.client.session.timeout)

    @property
    def servers(self) -> tuple[str, ...]:
        """The servers the client tries, in turn, as ``host:port``."""
        return tuple(_host_port(host, port) for host, port in self.client.session.hosts)

    @property
    def server(self) -> str | None:
        """The server of the current (or last) connection, as ``host:port``; ``None`` before any."""
        conn = getattr(self.client.session, "conn", None)
        return _host_port(conn.host, conn.port) if conn is not None else None

    @property
    def started(self) -> bool:
        return bool(self.client.session.started)

    async def start(self, *, connect_timeout_s: float) -> None:
        """Connect and establish a session, or raise :class:`ConnectTimeoutError`, or at once
        :class:`TLSError` or :class:`AuthFailedError` when retrying cannot help."""
        session = self.client.session
        if not isinstance(session, _HardenedSession):
            await self._start(self.client.start(), connect_timeout_s)
            return
        fatal: asyncio.Future[ZooKeeperError] = asyncio.get_running_loop().create_future()
        session.fatal = fatal

        async def start_or_give_up() -> None:
            starting = asyncio.ensure_future(self.client.start())
            try:
                waited: list[asyncio.Future[Any]] = [starting, fatal]
                await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not starting.done():
                    starting.cancel()
            if not starting.done() or starting.cancelled():
                raise fatal.result()
            starting.result()

        try:
            await self._start(start_or_give_up(), connect_timeout_s)
        except (TLSError, AuthFailedError):
            await self._abandon()
            raise
        finally:
            session.fatal = None
            fatal.cancel()

    async def _start(self, starting: Awaitable[None], connect_timeout_s: float) -> None:
        try:
            await asyncio.wait_for(starting, connect_timeout_s)
        except TimeoutError:
            await self._abandon()
            raise ConnectTimeoutError(
                f"no ZooKeeper server answered within {connect_timeout_s:g} s "
                f"({', '.join(f'{h}:{p}' for h, p in self.client.session.hosts)})"
            ) from None
        except zk_exc.ZKError as e:
            await self._abandon()
            with _converted("connect"):
                raise e

    async def close(self) -> None:
        """Close the session so that its ephemeral nodes go at once; never hangs past T."""
        session = self.client.session
        if not session.started:
            return
        try:
            # aiozk waits up to T for the close reply and then skips the rest of its cleanup.
            await asyncio.wait_for(self.client.close(), max(self.negotiated_timeout_s / 3, 0.5))
        except (TimeoutError, zk_exc.ZKError, OSError):
            await self._abandon()

    async def _abandon(self) -> None:
        """Tear the client down without the server's help (it may be unreachable)."""
        session = self.client.session
        session.closing = True
        for task in (session.repair_loop_task, session.heartbeat_task):
            if task is not None and not task.done():
                task.cancel()
        if session.heartbeat_handle is not None:
            session.heartbeat_handle.cancel()
        if session.conn is not None:
            session.conn.abort(zk_exc.ConnectError)
            with contextlib.suppress(Exception):
                if session.conn.writer is not None:
                    session.conn.writer.close()
        if session.state.current_state != States.LOST:
            session.state.transition_to(States.LOST)
        session.closing = False
        session.started = False

    def state_change(self) -> asyncio.Future[None]:
        """A future that resolves at aiozk's next session state transition."""
        machine = self.client.session.state
        others = [States.CONNECTED, States.SUSPENDED, States.READ_ONLY, States.LOST]
        others.remove(machine.current_state)
        fut: asyncio.Future[None] = machine.wait_for(*others)

        def _forget(f: asyncio.Future[None]) -> None:
            for state in others:
                machine.futures[state].discard(f)

        fut.add_done_callback(_forget)
        return fut

    # -- requests --------------------------------------------------------------------

    async def _call(self, what: str, request: protocol.Request[_R], *, probe: bool = False) -> _R:
        if probe:
            return await self._send(what, request)
        async with self._in_flight:
            return await self._send(what, request)

    async def _send(self, what: str, request: protocol.Request[_R]) -> _R:
        self.requests_sent[type(request).__name__.removesuffix("Request")] += 1
        sent = time.monotonic()
        session_id = self.session_id
        with _converted(what):
            # The session's send, not the client's: aiozk's client caches every stat it sees.
            response: _R = await self.client.session.send(request)
        # Only an answer on the session the request was sent on proves that session alive.
        if (
            session_id is not None
            and session_id == self.session_id
            and (self.last_answered_send is None or sent > self.last_answered_send)
        ):
            self.last_answered_send = sent
            self._answered_session = session_id
        return response

    def answered_since(self, session_id: int) -> float | None:
        """Send time of the last answered request on ``session_id``, if any."""
        return self.last_answered_send if self._answered_session == session_id else None

    def _path(self, path: str) -> str:
        return str(self.client.normalize_path(path))

    async def sync(self, path: str) -> None:
        """A round trip through the ZooKeeper leader: our liveness probe."""
        await self._call(f"sync {path}", protocol.SyncRequest(path=self._path(path)), probe=True)

    async def ensure_path(self, path: str, acl: Sequence[AclEntry] | None = None) -> None:
        """Create ``path`` and its missing ancestors; with ``acl``, ``path`` itself gets it
        (the ancestors are created open, as without)."""
        with _converted(f"create {path}"):
            if acl is None:
                await self.client.ensure_path(path)
                return
            parent = path.rsplit("/", 1)[0]
            if parent:
                await self.client.ensure_path(parent)
            request = protocol.Create2Request(path=self._path(path), data=b"", acl=_aiozk_acl(acl))
            request.set_flags(ephemeral=False, sequential=False, container=False)
            with contextlib.suppress(zk_exc.NodeExists):
                await self.client.send(request)

    async def get_acl(self, path: str) -> tuple[AclEntry, ...]:
        """``path``'s ACL as ZooKeeper keeps it (``auth`` entries expanded to the creator's ids)."""
        response: protocol.GetACLResponse = await self._call(
            f"read the ACL of {path}", protocol.GetACLRequest(path=self._path(path))
        )
        return tuple(AclEntry(str(a.id.scheme), str(a.id.id), int(a.perms)) for a in response.acl)

    async def create_ephemeral_sequential(
        self, prefix: str, data: bytes, acl: Sequence[AclEntry] | None = None
    ) -> tuple[str, Stat]:
        """Create ``prefix`` + a sequence number (with ``acl``, else open); returns the node's
        path and stat."""
        if len(data) > MAX_WRITE_BYTES:
            raise DataTooLargeError(
                f"node data is {len(data)} bytes; ZooKeeper accepts at most {MAX_WRITE_BYTES}"
            )
        request = protocol.Create2Request(
            path=self._path(prefix),
            data=data,
            acl=self.client.default_acl if acl is None else _aiozk_acl(acl),
        )
        request.set_flags(ephemeral=True, sequential=True, container=False)
        response: protocol.Create2Response = await self._call(f"create {prefix}", request)
        return str(self.client.denormalize_path(response.path)), Stat._from_aiozk(response.stat)

    async def children(self, path: str, *, watch: bool = False) -> list[str]:
        """List ``path``'s children; with ``watch`` the next change fires :meth:`watch_children`."""
        names, _ = await self.children_and_stat(path, watch=watch)
        return names

    async def children_and_stat(self, path: str, *, watch: bool = False) -> tuple[list[str], Stat]:
        """``path``'s children and its own stat, in one request."""
        response: protocol.GetChildren2Response = await self._call(
            f"list {path}", protocol.GetChildren2Request(path=self._path(path), watch=watch)
        )
        return list(response.children), Stat._from_aiozk(response.stat)

    async def get(self, path: str, *, watch: bool = False) -> tuple[bytes, Stat]:
        """Read a node; with ``watch`` its deletion or change will fire :meth:`watch`'s future."""
        response: protocol.GetDataResponse = await self._call(
            f"read {path}", protocol.GetDataRequest(path=self._path(path), watch=watch)
        )
        return bytes(response.data or b""), Stat._from_aiozk(response.stat)

    async def set(self, path: str, data: bytes, *, version: int = -1) -> Stat:
        """Set ``path``'s data (only at ``version`` unless it is -1)."""
        _check_size(data)
        request = protocol.SetDataRequest(path=self._path(path), data=data, version=version)
        response: protocol.SetDataResponse = await self._call(f"write {path}", request)
        return Stat._from_aiozk(response.stat)

    async def exists(self, path: str, *, watch: bool = False) -> Stat | None:
        """``path``'s stat, or None if there is no such node. With ``watch``, whether the node
        exists or not, its next creation, change or deletion fires :meth:`watch`'s future."""
        try:
            response: protocol.ExistsResponse = await self._call(
                f"stat {path}", protocol.ExistsRequest(path=self._path(path), watch=watch)
            )
        except NoNodeError:
            return None
        return Stat._from_aiozk(response.stat)

    async def delete(self, path: str) -> None:
        await self._call(f"delete {path}", protocol.DeleteRequest(path=self._path(path), version=-1))

    async def guarded_set(self, guard: str, path: str, data: bytes) -> Stat:
        """Set ``path``'s data in one multi that fails unless node ``guard`` exists."""
        _check_size(data)
        multi = protocol.TransactionRequest()
        multi.add(protocol.CheckVersionRequest(path=self._path(guard), version=-1))
        multi.add(protocol.SetDataRequest(path=self._path(path), data=data, version=-1))
        response: protocol.TransactionResponse = await self._call(f"guarded write {path}", multi)
        self._raise_multi_failure(f"guarded write {path}", guard, response.responses)
        set_result = response.responses[1]
        assert isinstance(set_result, protocol.SetDataResponse)
        return Stat._from_aiozk(set_result.stat)

    async def guarded_create(
        self, guard: str, path: str, data: bytes, acl: Sequence[AclEntry] | None
    ) -> None:
        """Create persistent ``path`` in one multi that fails unless node ``guard`` exists."""
        _check_size(data)
        multi = protocol.TransactionRequest()
        multi.add(protocol.CheckVersionRequest(path=self._path(guard), version=-1))
        create = protocol.CreateRequest(
            path=self._path(path), data=data, acl=self.client.default_acl if acl is None else _aiozk_acl(acl)
        )
        create.set_flags(ephemeral=False, sequential=False, container=False)
        multi.add(create)
        response: protocol.TransactionResponse = await self._call(f"guarded create {path}", multi)
        self._raise_multi_failure(f"guarded create {path}", guard, response.responses)

    async def set_and_delete(self, path: str, data: bytes, node: str) -> None:
        """Set ``path``'s data and delete ``node`` in one multi: both happen, or neither."""
        _check_size(data)
        multi = protocol.TransactionRequest()
        multi.add(protocol.SetDataRequest(path=self._path(path), data=data, version=-1))
        multi.add(protocol.DeleteRequest(path=self._path(node), version=-1))
        response: protocol.TransactionResponse = await self._call(f"write {path} and delete {node}", multi)
        for result in response.responses:
            if isinstance(result, Exception) and not isinstance(result, zk_exc.RolledBack):
                with _converted(f"write {path} and delete {node}"):
                    raise result

    @staticmethod
    def _raise_multi_failure(what: str, guard: str, results: Sequence[Any]) -> None:
        guard_result, *rest = results
        # A guard that held is reported as RolledBack when another operation failed.
        if isinstance(guard_result, Exception) and not isinstance(guard_result, zk_exc.RolledBack):
            raise GuardFailedError(f"{what}: guard {guard} is gone") from guard_result
        for result in rest:
            if isinstance(result, Exception):
                with _converted(what):
                    raise result

    # -- watched reads: arm a watch, read, cancel the watch on error ---------------------

    async def watched_get(self, path: str) -> tuple[bytes, Stat, asyncio.Future[None]]:
        """Read ``path`` and watch it: ``(data, stat, fired)``.

        ``fired`` resolves at the node's next change or deletion. It is taken before the read
        is sent, so no change after the read is missed; if the read fails (NoNodeError
        included) it is cancelled before the error propagates. Cancel it when done with it.
        """
        fired = self.watch(path)
        raw, stat = await _cancel_on_error(self.get(path, watch=True), fired)
        return raw, stat, fired

    async def watched_node(self, path: str) -> tuple[bytes, Stat, asyncio.Future[None], asyncio.Future[None]]:
        """Read ``path`` and watch it, as :meth:`watched_get`, with its deletion and its other
        changes apart: ``(data, stat, deleted, changed)``; cancel both when done with them."""
        deleted = self._watch_future(path, (protocol.WatchEvent.DELETED,))
        changed = self._watch_future(path, (protocol.WatchEvent.CREATED, protocol.WatchEvent.DATA_CHANGED))
        raw, stat = await _cancel_on_error(self.get(path, watch=True), deleted, changed)
        return raw, stat, deleted, changed

    async def watched_children(self, path: str) -> tuple[list[str], asyncio.Future[None]]:
        """List ``path``'s children and watch them: ``(names, fired)``, as :meth:`watched_get`."""
        fired = self.watch_children(path)
        names = await _cancel_on_error(self.children(path, watch=True), fired)
        return names, fired

    async def watched_exists(self, path: str) -> tuple[Stat | None, asyncio.Future[None]]:
        """``path``'s stat (None if missing) and a future for its next creation, change or
        deletion: ZooKeeper sets the watch whether or not the node exists."""
        fired = self.watch(path)
        stat = await _cancel_on_error(self.exists(path, watch=True), fired)
        return stat, fired

    def watch(self, path: str) -> asyncio.Future[None]:
        """A future resolving at the next data watch event on ``path`` (created, deleted or changed).

        Arm the server-side watch with ``get(path, watch=True)`` or ``exists(path, watch=True)``
        after taking this future.
        Cancelling the future unregisters it. Watches do not survive a reconnection reliably
        (aiozk re-arms only some kinds): re-read and re-arm after every session edge.
        """
        return self._watch_future(
            path, (protocol.WatchEvent.CREATED, protocol.WatchEvent.DELETED, protocol.WatchEvent.DATA_CHANGED)
        )

    def watch_children(self, path: str) -> asyncio.Future[None]:
        """A future resolving at the next change of ``path``'s children (or its deletion).

        Arm it with ``children(path, watch=True)`` after taking this future.
        """
        return self._watch_future(path, (protocol.WatchEvent.CHILDREN_CHANGED, protocol.WatchEvent.DELETED))

    def _watch_future(self, path: str, kinds: tuple[int, ...]) -> asyncio.Future[None]:
        session = self.client.session
        full = self._path(path)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def _fire(_path: str) -> None:
            if not fut.done():
                fut.set_result(None)

        def _forget(_f: asyncio.Future[None]) -> None:
            for kind in kinds:
                with contextlib.suppress(KeyError):
                    session.remove_watch_callback(kind, full, _fire)

        for kind in kinds:
            session.add_watch_callback(kind, full, _fire)
        fut.add_done_callback(_forget)
        return fut


# -- the raw protocol, for the testing harness's session killer --------------------------


def connect_request(session_id: int, password: bytes, *, timeout_ms: int) -> bytes:
    """A serialized handshake reattaching to ``session_id`` (without the length prefix)."""
    request = protocol.ConnectRequest(
        protocol_version=0,
        last_seen_zxid=0,
        timeout=timeout_ms,
        session_id=session_id,
        password=password,
        read_only=False,
    )
    raw: bytes = request.serialize()
    return raw


def connect_response_session_id(raw: bytes) -> int:
    """The session id of a serialized handshake reply: 0 when the server refused the session."""
    session_id: int = protocol.ConnectResponse.deserialize(raw).session_id
    return session_id


def close_session_request(xid: int) -> bytes:
    """A serialized request that closes the connection's session (without the length prefix)."""
    raw: bytes = protocol.CloseRequest().serialize(xid)
    return raw


def _aiozk_acl(entries: Sequence[AclEntry]) -> list[aiozk.ACL]:
    acl = []
    for e in entries:
        entry = aiozk.ACL.make(scheme=e.scheme, id=e.id)
        entry.perms = e.perms
        acl.append(entry)
    return acl


def _check_size(data: bytes) -> None:
    if len(data) > MAX_WRITE_BYTES:
        raise DataTooLargeError(f"data is {len(data)} bytes; ZooKeeper accepts at most {MAX_WRITE_BYTES}")


async def first_of(*aws: Awaitable[Any]) -> None:
    """Wait until any of ``aws`` completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()


async def _cancel_on_error(request: Awaitable[_T], *fired: asyncio.Future[None]) -> _T:
    """Await ``request``; if it fails (or is cancelled), cancel the watch futures ``fired``."""
    try:
        return await request
    except BaseException:
        for fut in fired:
            fut.cancel()
        raise
