"""A ZooKeeper ensemble of real server JVMs on loopback, with crash, pause and partition helpers."""

from __future__ import annotations

import atexit
import errno
import os
import random
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, get_args

from election_daemon.errors import ConfigError
from election_daemon.testing._errors import ZooKeeperStartError
from election_daemon.testing._install import ZooKeeperInstall, find_zookeeper
from election_daemon.testing._peer_proxy import ElectionPortProxy
from election_daemon.testing._proxy import TcpProxy
from election_daemon.testing._server import ZooKeeperServer, wait_for
from election_daemon.testing._tls import CertKey, TlsFiles, digest_id

__all__ = ["ClientAuth", "ZooKeeperEnsemble"]

ClientAuth = Literal["need", "want", "none"]

# ZooKeeper counts these in ticks. With the default 200 ms tick: followers have 2 s to connect
# and sync to a new leader, and a server that hears nothing from its leader (or a leader from
# a quorum of followers) for 1 s gives up and starts an election.
_INIT_LIMIT_TICKS = 10
_SYNC_LIMIT_TICKS = 5
# An isolated server backs off between election rounds; ZooKeeper's default cap of 60 s would
# keep it out of the ensemble for up to a minute after heal().
_MAX_NOTIFICATION_INTERVAL_MS = 1000
_JVM_OPTIONS = (
    "-Xms32m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.net.preferIPv4Stack=true",
    "-Dzookeeper.jmx.log4j.disable=true",
    # ZooKeeper 3.8.0 logs a false "Digests are not matching" ERROR when a container node is
    # created (aiozk's ensure_path creates containers); it would mislead post-mortems.
    "-Dzookeeper.digest.enabled=false",
    f"-Dzookeeper.fastleader.maxNotificationInterval={_MAX_NOTIFICATION_INTERVAL_MS}",
)
_PORT_ATTEMPTS = 3
_NETTY_FACTORY = "org.apache.zookeeper.server.NettyServerCnxnFactory"
_X509_PROVIDER = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"
_LOG_PATTERN = "%d{ISO8601} %-5p [myid:%X{myid}] [%t:%c{1}] - %m%n"
_LOG4J_PROPERTIES = f"""\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=${{zookeeper.log.dir}}/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern={_LOG_PATTERN}
"""
_LOGBACK_XML = f"""\
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${{zookeeper.log.dir}}/zookeeper.log</file>
    <encoder><pattern>{_LOG_PATTERN}</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""

_ports_handed_out: set[int] = set()
_ports_lock = threading.Lock()
_unclosed: weakref.WeakSet[ZooKeeperEnsemble] = weakref.WeakSet()


class ZooKeeperEnsemble:
    """``size`` real ZooKeeper servers (JVMs) on free loopback ports, in a fresh temporary directory.

    ::

        with ZooKeeperEnsemble(3) as ensemble:
            client = aiozk.ZKClient(ensemble.hosts)
            ...
            ensemble.leader().kill()
            ensemble.wait_quorum()

    Each server has its own directory (``zoo.cfg``, data, ``zookeeper.log``). ``close()`` kills
    every server and deletes the directory, unless the environment variable ``KEEP_ZK_DIR`` is
    set (for post-mortems). Session timeouts default to ZooKeeper's: 2 to 20 ticks (0.4 to 4 s
    with the default 200 ms tick).

    ``quorum_proxies=True`` routes all server-to-server traffic (quorum and leader election)
    through a :class:`TcpProxy` per ordered pair of servers, so that :meth:`isolate` can cut one
    server off from the others, without root. All servers share one ``zoo.cfg`` that names
    peers by host name, and each JVM resolves those names through its own hosts file
    (``-Djdk.net.hosts.file``): its own name to 127.0.0.1, where it listens, and each peer's
    name to the address of the proxy for that pair, 127.1.<from>.<to>, on the peer's real
    ports. Per-server configs alone would leak: when a server dials a peer with a higher id,
    the peer hangs up and dials back the address advertised in the handshake, which is the
    dialer's real one. The election-port proxies therefore rewrite that address to the
    dialer's host name, which the peer resolves to the proxy for the reverse direction.

    Security (client connections only: quorum traffic stays plain):

    - ``tls``: a :class:`TlsFiles` bundle (see :func:`make_tls_files`). Each server then also
      serves TLS on a ``secureClientPort`` (``secure_hosts``), with the Netty connection factory,
      ``tls.server`` (or ``server_cert``) as its PEM key store and ``tls.ca`` as its trust store.
      ``plain_port=False`` drops the plain port (``hosts`` then raises; the harness's own
      four-letter words go over TLS, presenting ``tls.client``).
    - ``client_auth``: ``ssl.clientAuth``: ``need`` (a client without a certificate the CA
      signed is refused), ``want`` (a certificate is asked for, not required) or ``none``.
    - ``x509_auth``: registers the X509 authentication provider (``authProvider.x509``): a
      client presenting a certificate is authenticated as its subject, ACL ``x509:<subject>``
      (:attr:`CertKey.x509_id`). ZooKeeper 3.8 registers it by itself whenever it serves TLS;
      this writes the line explicitly.
    - ``enforce_auth``: schemes of which a session must have authenticated with one before its
      first request (``enforce.auth.enabled``, ``enforce.auth.schemes``), e.g.
      ``("digest", "x509")``; others are closed. Digest needs no server configuration: clients
      authenticate with ``addauth digest user:password`` and ACLs name :func:`digest_id` ids.
    - ``superuser``: ``(user, password)`` of a digest super user, who passes every ACL.

    ``extra_config``: more ``key=value`` lines for every server's zoo.cfg, written last.

    Blocking methods: async code calls them through ``asyncio.to_thread``.
    """

    def __init__(
        self,
        size: int = 1,
        *,
        tick_time_ms: int = 200,
        min_session_timeout_ms: int | None = None,
        max_session_timeout_ms: int | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        quorum_proxies: bool = False,
        start_timeout_s: float = 60.0,
        tls: TlsFiles | None = None,
        client_auth: ClientAuth = "need",
        x509_auth: bool = False,
        enforce_auth: tuple[str, ...] = (),
        plain_port: bool = True,
        superuser: tuple[str, str] | None = None,
        server_cert: CertKey | None = None,
        extra_config: tuple[str, ...] = (),
    ) -> None:
        if size < 1:
            raise ConfigError("size", f"an ensemble needs at least one server, got {size}")
        if quorum_proxies and size < 2:
            raise ConfigError("quorum_proxies", "a single server has no quorum connections to proxy")
        if tick_time_ms <= 0:
            raise ConfigError("tick_time_ms", f"must be positive, got {tick_time_ms}")
        if min_session_timeout_ms is not None and min_session_timeout_ms <= 0:
            raise ConfigError("min_session_timeout_ms", f"must be positive, got {min_session_timeout_ms}")
        if max_session_timeout_ms is not None and max_session_timeout_ms <= 0:
            raise ConfigError("max_session_timeout_ms", f"must be positive, got {max_session_timeout_ms}")
        if (
            min_session_timeout_ms is not None
            and max_session_timeout_ms is not None
            and max_session_timeout_ms < min_session_timeout_ms
        ):
            raise ConfigError("max_session_timeout_ms", "must be at least min_session_timeout_ms")
        if start_timeout_s <= 0:
            raise ConfigError("start_timeout_s", f"must be positive, got {start_timeout_s}")
        _check_security(
            tls=tls,
            client_auth=client_auth,
            x509_auth=x509_auth,
            enforce_auth=enforce_auth,
            plain_port=plain_port,
            server_cert=server_cert,
        )
        self.size = size
        self.tick_time_ms = tick_time_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.quorum_proxies = quorum_proxies
        self.start_timeout_s = start_timeout_s
        self.tls = tls
        self.client_auth: ClientAuth = client_auth
        self.x509_auth = x509_auth
        self.enforce_auth = tuple(enforce_auth)
        self.plain_port = plain_port
        self.superuser = superuser
        self.server_cert = server_cert if server_cert is not None or tls is None else tls.server
        for line in extra_config:
            if "=" not in line or "\n" in line:
                raise ConfigError("extra_config", f"not one key=value line: {line!r}")
        self.extra_config = tuple(extra_config)
        self._base_dir = base_dir
        self._install: ZooKeeperInstall = find_zookeeper()
        self._directory: Path | None = None
        self._servers: list[ZooKeeperServer] = []
        # (from myid, to myid) -> the proxies for the quorum and the election port of "to".
        self._proxies: dict[tuple[int, int], tuple[TcpProxy, TcpProxy]] = {}
        self._closed = False

    def __repr__(self) -> str:
        if not self._servers:
            return f"<ZooKeeperEnsemble size={self.size} hosts=(not started)>"
        where = [f"hosts={self.hosts}"] if self.plain_port else []
        where += [f"secure_hosts={self.secure_hosts}"] if self.tls is not None else []
        return f"<ZooKeeperEnsemble size={self.size} {' '.join(where)}>"

    # Lifecycle

    def start(self) -> Self:
        """Start every server and wait until all of them serve; ZooKeeperStartError if they do not."""
        if self._closed:
            raise RuntimeError("a closed ZooKeeperEnsemble cannot be started again")
        if self._servers:
            return self
        self._directory = Path(tempfile.mkdtemp(prefix="zookeeper-", dir=self._base_dir))
        _unclosed.add(self)
        for _ in range(_PORT_ATTEMPTS):
            try:
                self._launch()
            except _PortTakenError:
                # Ports are picked free but bound only when the JVMs start: another process can
                # take one in between. Rare; start over with fresh ports.
                self._stop_all()
            except BaseException:
                self.close()
                raise
            else:
                return self
        self.close()
        raise ZooKeeperStartError(f"the ports picked were taken by someone else, {_PORT_ATTEMPTS} times")

    def close(self) -> None:
        """Kill every server, close the proxies, delete the directory (kept if KEEP_ZK_DIR is set)."""
        self._closed = True
        _unclosed.discard(self)
        self._stop_all()
        if self._directory is not None and not os.environ.get("KEEP_ZK_DIR"):
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # What tests read

    @property
    def hosts(self) -> str:
        """The client connect string: ``127.0.0.1:p1,127.0.0.1:p2,...`` (plain ports)."""
        return ",".join(server.address for server in self.servers)

    @property
    def secure_hosts(self) -> str:
        """The connect string of the TLS ports; RuntimeError if the ensemble serves no TLS."""
        return ",".join(server.secure_address for server in self.servers)

    @property
    def servers(self) -> list[ZooKeeperServer]:
        if not self._servers:
            raise RuntimeError("the ensemble is not started")
        return list(self._servers)

    @property
    def directory(self) -> Path:
        """The ensemble's directory: one ``zk<myid>`` subdirectory per server."""
        if self._directory is None:
            raise RuntimeError("the ensemble is not started")
        return self._directory

    def server_for_client_port(self, port: int) -> ZooKeeperServer:
        """The server listening for clients on ``port``; KeyError if none."""
        for server in self.servers:
            if port in (server.secure_client_port, server.client_port if server.has_plain_port else None):
                return server
        raise KeyError(port)

    def server_of_session(self, session_id: int) -> ZooKeeperServer | None:
        """The server the session is connected to now (from ``cons``), or None."""
        for server in self.servers:
            if session_id in server.session_ids():
                return server
        return None

    def four_letter(self, server: ZooKeeperServer, command: str) -> str:
        """Send a four-letter word to one server; see :meth:`ZooKeeperServer.four_letter`."""
        return server.four_letter(command)

    def leader(self, *, timeout_s: float = 10.0) -> ZooKeeperServer:
        """The one server in mode leader (standalone for a single server), waiting for it if needed."""

        def sole_leader() -> ZooKeeperServer | None:
            leaders = [server for server in self.servers if server.mode() in ("leader", "standalone")]
            return leaders[0] if len(leaders) == 1 else None

        return wait_for(
            sole_leader, timeout_s=timeout_s, failure=lambda: f"no single leader: {self._modes()}"
        )

    def wait_quorum(self, *, timeout_s: float = 30.0) -> ZooKeeperServer:
        """Wait until a majority of servers serve, one of them the leader; return the leader."""

        def quorum_leader() -> ZooKeeperServer | None:
            modes = {server: server.mode() for server in self.servers}
            serving = [server for server, mode in modes.items() if mode is not None]
            leaders = [server for server, mode in modes.items() if mode in ("leader", "standalone")]
            return leaders[0] if len(serving) > self.size // 2 and len(leaders) == 1 else None

        return wait_for(quorum_leader, timeout_s=timeout_s, failure=lambda: f"no quorum: {self._modes()}")

    def log_tails(self, lines: int = 40) -> str:
        """The end of every server's log, for a failure report."""
        return "\n".join(server.log_tail(lines) for server in self._servers)

    # Partitions (quorum_proxies=True)

    def isolate(self, server: ZooKeeperServer) -> None:
        """Cut ``server`` off from every other server (both ways); clients still reach it.

        It stops serving within about syncLimit (1 s at the default tick); the others keep or
        regain a quorum if they are a majority.
        """
        for proxy in self._proxies_touching(server):
            proxy.cut()

    def heal(self) -> None:
        """Undo every :meth:`isolate`."""
        for pair in self._require_proxies().values():
            for proxy in pair:
                proxy.restore()

    def quorum_proxies_between(
        self, source: ZooKeeperServer, target: ZooKeeperServer
    ) -> tuple[TcpProxy, ...]:
        """The proxies carrying ``source``'s connections to ``target`` (quorum, then election)."""
        return self._require_proxies()[(source.myid, target.myid)]

    # Internals

    def _proxies_touching(self, server: ZooKeeperServer) -> list[TcpProxy]:
        pairs = self._require_proxies()
        return [
            proxy
            for (source, target), pair in pairs.items()
            if server.myid in (source, target)
            for proxy in pair
        ]

    def _require_proxies(self) -> dict[tuple[int, int], tuple[TcpProxy, TcpProxy]]:
        if not self.quorum_proxies:
            raise ConfigError("quorum_proxies", "partitions need ZooKeeperEnsemble(..., quorum_proxies=True)")
        return self._proxies

    def _modes(self) -> str:
        return ", ".join(f"myid {server.myid}: {server.mode() or 'not serving'}" for server in self._servers)

    def _launch(self) -> None:
        directory = self.directory
        (directory / "log4j.properties").write_text(_LOG4J_PROPERTIES)
        (directory / "logback.xml").write_text(_LOGBACK_XML)
        myids = range(1, self.size + 1)
        proxy_hosts = (
            [_proxy_host(source, target) for source in myids for target in myids if source != target]
            if self.quorum_proxies
            else []
        )
        client_ports = [_pick_port() if self.plain_port else None for _ in myids]
        secure_ports = [_pick_port() if self.tls is not None else None for _ in myids]
        # Quorum and election ports must also be free on the proxies' addresses: they listen on them.
        peer_ports = {myid: (_pick_port(proxy_hosts), _pick_port(proxy_hosts)) for myid in myids}
        if self.quorum_proxies:
            self._start_proxies(peer_ports)
        config = self._config(peer_ports)
        for index, myid in enumerate(myids):
            server_dir = directory / f"zk{myid}"
            shutil.rmtree(server_dir, ignore_errors=True)  # left over from an attempt whose ports were taken
            (server_dir / "data").mkdir(parents=True)
            (server_dir / "data" / "myid").write_text(f"{myid}\n")
            (server_dir / "zoo.cfg").write_text(
                config.format(
                    data_dir=server_dir / "data",
                    client_port=client_ports[index],
                    secure_client_port=secure_ports[index],
                )
            )
            (server_dir / "hosts").write_text(self._hosts_file(myid))
            options = (
                *_JVM_OPTIONS,
                f"-Djdk.net.hosts.file={server_dir / 'hosts'}",
                f"-Dzookeeper.log.dir={server_dir}",
                f"-Dlog4j.configuration={(directory / 'log4j.properties').as_uri()}",
                f"-Dlogback.configurationFile={directory / 'logback.xml'}",
                *self._security_jvm_options(),
            )
            self._servers.append(
                ZooKeeperServer(
                    index=index,
                    client_port=client_ports[index],
                    directory=server_dir,
                    command=self._install.command(options, server_dir / "zoo.cfg"),
                    peers=self._servers,
                    secure_client_port=secure_ports[index],
                    ssl_context=self._probe_context(),
                )
            )
        for server in self._servers:
            server.launch()
        deadline = time.monotonic() + self.start_timeout_s
        for server in self._servers:
            try:
                server.wait_serving(max(deadline - time.monotonic(), 0.0))
            except (ZooKeeperStartError, TimeoutError) as error:
                if any("Address already in use" in peer.log_tail(200) for peer in self._servers):
                    raise _PortTakenError from error
                raise ZooKeeperStartError(
                    f"ZooKeeper ({self._install.source}) did not start: {error}".splitlines()[0]
                    + f"\n{server.log_tail()}"
                ) from None

    def _start_proxies(self, peer_ports: dict[int, tuple[int, int]]) -> None:
        for source in peer_ports:
            for target, ports in peer_ports.items():
                if source == target:
                    continue
                host = _proxy_host(source, target)
                quorum_port, election_port = ports
                pair = (
                    TcpProxy("127.0.0.1", quorum_port, listen_host=host, listen_port=quorum_port),
                    ElectionPortProxy(
                        election_port,
                        listen_host=host,
                        advertised=f"{_host_name(source)}:{peer_ports[source][1]}",
                    ),
                )
                self._proxies[(source, target)] = pair
                for proxy in pair:
                    try:
                        proxy.start()
                    except OSError as error:
                        if error.errno == errno.EADDRINUSE:
                            raise _PortTakenError from error
                        raise

    def _config(self, peer_ports: dict[int, tuple[int, int]]) -> str:
        """zoo.cfg, with ``{data_dir}`` and ``{client_port}`` left to fill in per server."""
        lines = [
            f"tickTime={self.tick_time_ms}",
            f"initLimit={_INIT_LIMIT_TICKS}",
            f"syncLimit={_SYNC_LIMIT_TICKS}",
            "dataDir={data_dir}",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "reconfigEnabled=false",
            "standaloneEnabled=true",
            # Throwaway data: skipping fsync makes every write much faster.
            "forceSync=no",
            "preAllocSize=1024",
        ]
        if self.plain_port:
            lines += ["clientPort={client_port}", "clientPortAddress=127.0.0.1"]
        lines += self._security_config()
        lines += [line.replace("{", "{{").replace("}", "}}") for line in self.extra_config]
        if self.min_session_timeout_ms is not None:
            lines.append(f"minSessionTimeout={self.min_session_timeout_ms}")
        if self.max_session_timeout_ms is not None:
            lines.append(f"maxSessionTimeout={self.max_session_timeout_ms}")
        if self.size > 1:
            lines += [f"server.{myid}={_host_name(myid)}:{q}:{e}" for myid, (q, e) in peer_ports.items()]
        return "\n".join(lines) + "\n"

    def _security_config(self) -> list[str]:
        """zoo.cfg lines for TLS and authentication, ``{secure_client_port}`` left to fill in.

        ZooKeeper turns the keys it does not know into ``zookeeper.<key>`` system properties.
        """
        lines: list[str] = []
        if self.tls is not None:
            assert self.server_cert is not None  # set from tls in __init__
            lines += [
                "secureClientPort={secure_client_port}",
                "secureClientPortAddress=127.0.0.1",
                f"serverCnxnFactory={_NETTY_FACTORY}",
                f"ssl.keyStore.location={_literal(self.server_cert.keystore)}",
                "ssl.keyStore.type=PEM",
                f"ssl.trustStore.location={_literal(self.tls.ca)}",
                "ssl.trustStore.type=PEM",
                f"ssl.clientAuth={self.client_auth}",
            ]
        if self.x509_auth:
            lines.append(f"authProvider.x509={_X509_PROVIDER}")
        if self.enforce_auth:
            lines += ["enforce.auth.enabled=true", f"enforce.auth.schemes={','.join(self.enforce_auth)}"]
        return lines

    def _security_jvm_options(self) -> tuple[str, ...]:
        if self.superuser is None:
            return ()
        return (f"-Dzookeeper.DigestAuthenticationProvider.superDigest={digest_id(*self.superuser)}",)

    def _probe_context(self) -> ssl.SSLContext | None:
        """For the harness's four-letter words over TLS, when there is no plain port."""
        if self.plain_port or self.tls is None:
            return None
        return self.tls.client_context(self.tls.client, check_hostname=False)

    def _hosts_file(self, own_myid: int) -> str:
        lines = ["127.0.0.1 localhost", f"127.0.0.1 {socket.gethostname()}"]
        for myid in range(1, self.size + 1):
            routed = self.quorum_proxies and myid != own_myid
            lines.append(f"{_proxy_host(own_myid, myid) if routed else '127.0.0.1'} {_host_name(myid)}")
        return "\n".join(lines) + "\n"

    def _stop_all(self) -> None:
        for server in self._servers:
            server.kill()
        self._servers.clear()
        for pair in self._proxies.values():
            for proxy in pair:
                proxy.close()
        self._proxies.clear()


@atexit.register
def _close_forgotten_ensembles() -> None:
    for ensemble in list(_unclosed):
        ensemble.close()


def _literal(path: Path) -> str:
    """``path`` escaped for str.format."""
    return str(path).replace("{", "{{").replace("}", "}}")


def _check_security(
    *,
    tls: TlsFiles | None,
    client_auth: str,
    x509_auth: bool,
    enforce_auth: tuple[str, ...],
    plain_port: bool,
    server_cert: CertKey | None,
) -> None:
    if client_auth not in get_args(ClientAuth):
        raise ConfigError(
            "client_auth", f"must be one of {', '.join(get_args(ClientAuth))}, got {client_auth!r}"
        )
    if tls is None:
        if not plain_port:
            raise ConfigError("plain_port", "a server without TLS needs its plain port")
        if x509_auth:
            raise ConfigError("x509_auth", "X509 authentication needs TLS (tls=...)")
        if server_cert is not None:
            raise ConfigError("server_cert", "a server certificate needs TLS (tls=...)")
    if isinstance(enforce_auth, str):
        raise ConfigError(
            "enforce_auth", f"a tuple of schemes, e.g. ('digest',), not the string {enforce_auth!r}"
        )
    for scheme in enforce_auth:
        if not re.fullmatch(r"[a-z0-9]+", scheme):
            raise ConfigError("enforce_auth", f"not an authentication scheme: {scheme!r}")
    if "x509" in enforce_auth and tls is None:
        raise ConfigError("enforce_auth", "the x509 scheme needs TLS (tls=...)")


class _PortTakenError(Exception):
    """A port picked as free was taken before the server or proxy bound it."""


def _host_name(myid: int) -> str:
    return f"zookeeper-{myid}"


def _proxy_host(source: int, target: int) -> str:
    return f"127.1.{source}.{target}"


def _pick_port(extra_hosts: list[str] | None = None) -> int:
    """A port that is free now on 127.0.0.1 (and ``extra_hosts``), not already handed out here.

    Picked below the kernel's ephemeral range, so outgoing connections cannot take it before
    the server binds it.
    """
    low = _ephemeral_port_floor()
    hosts = ["127.0.0.1", *(extra_hosts or [])]
    with _ports_lock:
        for _ in range(1000):
            port = random.randrange(10000, low)
            if port not in _ports_handed_out and all(_is_free(host, port) for host in hosts):
                _ports_handed_out.add(port)
                return port
    raise ZooKeeperStartError(f"no free port found in 10000..{low}")


def _ephemeral_port_floor() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 10001)


def _is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
