"""The testing harness itself: real ZooKeeper servers, ensembles, proxies and forced expiry."""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, closing, suppress
from pathlib import Path

import aiozk
import pytest

from election_daemon.errors import ConfigError, ElectionError, SessionLostError
from election_daemon.testing import (
    TcpProxy,
    ZooKeeperEnsemble,
    ZooKeeperNotFoundError,
    ZooKeeperStartError,
    expire_session,
    find_zookeeper,
)
from election_daemon.testing.pytest_plugin import TcpProxyFactory

SESSION_TIMEOUT_S = 2.0
# How long "nothing arrives" is watched for; short, as the proxy forwards in microseconds.
SILENCE_S = 0.3


def wait_until(predicate: Callable[[], bool], *, timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


@asynccontextmanager
async def client(hosts: str) -> AsyncIterator[aiozk.ZKClient]:
    zk = aiozk.ZKClient(hosts, session_timeout=SESSION_TIMEOUT_S)
    await asyncio.wait_for(zk.start(), 20)
    try:
        yield zk
    finally:
        await asyncio.wait_for(zk.close(), 20)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ZooKeeper servers


@pytest.mark.timeout(60)
async def test_single_server_serves_a_client(zk: ZooKeeperEnsemble, zk_hosts: str, zk_path: str) -> None:
    [server] = zk.servers
    assert zk_hosts == server.address == f"127.0.0.1:{server.client_port}"
    assert await asyncio.to_thread(zk.leader) is server
    assert await asyncio.to_thread(server.mode) == "standalone"
    async with client(zk_hosts) as zk_client:
        await zk_client.ensure_path(zk_path)
        await zk_client.create(f"{zk_path}/node", data=b"hello")
        assert await zk_client.get_data(f"{zk_path}/node") == b"hello"
        session_id = zk_client.session.session_id
        assert session_id is not None
        assert await asyncio.to_thread(zk.server_of_session, session_id) is server
    assert server.log_path.read_text().strip(), "ZooKeeper's own log is written"


@pytest.mark.timeout(90)
async def test_ensemble_elects_one_leader_and_survives_losing_it(
    zk_ensemble: ZooKeeperEnsemble, zk_path: str
) -> None:
    modes = sorted(str(server.mode()) for server in zk_ensemble.servers)
    assert modes == ["follower", "follower", "leader"]
    old_leader = zk_ensemble.leader()
    old_pid = old_leader.pid
    assert old_pid is not None

    await asyncio.to_thread(old_leader.kill)
    assert not old_leader.is_running
    assert old_leader.mode() is None
    assert not pid_exists(old_pid)
    new_leader = await asyncio.to_thread(zk_ensemble.wait_quorum)
    assert new_leader is not old_leader
    async with client(zk_ensemble.hosts) as zk_client:
        await zk_client.ensure_path(zk_path)
        conn, session_id = zk_client.session.conn, zk_client.session.session_id
        assert conn is not None and session_id is not None
        connected = zk_ensemble.server_for_client_port(conn.port)
        server = await asyncio.to_thread(zk_ensemble.server_of_session, session_id)
        assert server is connected

    await asyncio.to_thread(old_leader.start)  # a quorum is up: start() waits until it serves
    assert old_leader.mode() == "follower"


@pytest.mark.timeout(60)
def test_paused_server_answers_nothing_until_resumed(zk_single: ZooKeeperEnsemble) -> None:
    [server] = zk_single.servers
    server.pause()
    assert server.is_running and server.is_paused
    with pytest.raises(TimeoutError):
        server.four_letter("ruok", timeout_s=SILENCE_S)
    assert server.mode() is None
    server.resume()
    server.wait_serving(20)
    assert server.four_letter("ruok") == "imok"


@pytest.mark.timeout(60)
def test_close_stops_every_jvm_and_removes_the_directory(tmp_path: Path) -> None:
    ensemble = ZooKeeperEnsemble(1, base_dir=tmp_path).start()
    [server] = ensemble.servers
    pid, directory = server.pid, ensemble.directory
    assert pid is not None and directory.parent == tmp_path
    assert (directory / "zk1" / "zoo.cfg").is_file()
    server.stop()
    assert not pid_exists(pid)
    server.start()  # a single server is its own quorum: serving again once start() returns
    assert server.mode() == "standalone"
    pid = server.pid
    assert pid is not None
    ensemble.close()
    assert not pid_exists(pid)
    assert not directory.exists()


@pytest.mark.ensemble(quorum_proxies=True)
@pytest.mark.timeout(90)
def test_isolated_server_stops_serving_and_the_others_keep_a_quorum(zk_ensemble: ZooKeeperEnsemble) -> None:
    old_leader = zk_ensemble.leader()
    zk_ensemble.isolate(old_leader)
    wait_until(lambda: old_leader.mode() is None, what="the isolated leader to stop serving")
    new_leader = zk_ensemble.wait_quorum(timeout_s=20)
    assert new_leader is not old_leader
    assert old_leader.is_running
    # Stays out: its election messages cannot reach the others either.
    with pytest.raises(TimeoutError):
        old_leader.wait_serving(1.0)

    zk_ensemble.heal()
    old_leader.wait_serving(20)
    assert old_leader.mode() == "follower"


def test_missing_zookeeper_fails_with_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    monkeypatch.delenv("ZOOKEEPER_CLASSPATH", raising=False)
    monkeypatch.delenv("ZOOKEEPER_JAR", raising=False)
    monkeypatch.setenv("ZOOKEEPER_HOME", str(tmp_path))
    with pytest.raises(ZooKeeperNotFoundError, match="apt-get install zookeeper") as caught:
        find_zookeeper()
    assert isinstance(caught.value, ElectionError)
    assert "\n" not in str(caught.value)

    pytester.makepyfile("def test_needs_zookeeper(zk_hosts):\n    pass\n")
    result = pytester.runpytest("-p", "election_daemon.testing.pytest_plugin", "-p", "no:asyncio")
    result.assert_outcomes(errors=1)  # failed in its fixture: an error, never a skip
    result.stdout.fnmatch_lines(
        ["ZOOKEEPER_HOME=* has no lib/*.jar: install ZooKeeper (apt-get install zookeeper)*"]
    )
    result.stdout.no_fnmatch_line("*During handling*")


def test_a_server_that_cannot_start_fails_with_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZOOKEEPER_CLASSPATH", str(tmp_path / "missing.jar"))
    with pytest.raises(ZooKeeperStartError, match="QuorumPeerMain"):
        ZooKeeperEnsemble(1, base_dir=tmp_path).start()
    assert list(tmp_path.iterdir()) == [], "the failed ensemble cleaned up after itself"


def test_bad_settings_are_refused_up_front() -> None:
    with pytest.raises(ConfigError) as caught:
        ZooKeeperEnsemble(0)
    assert caught.value.field == "size"
    with pytest.raises(ConfigError) as caught:
        ZooKeeperEnsemble(1, quorum_proxies=True)
    assert caught.value.field == "quorum_proxies"
    with pytest.raises(ConfigError) as caught:
        ZooKeeperEnsemble(1, min_session_timeout_ms=4000, max_session_timeout_ms=1000)
    assert caught.value.field == "max_session_timeout_ms"
    with pytest.raises(ConfigError) as caught:
        TcpProxy("127.0.0.1", 0)
    assert caught.value.field == "target_port"


# Forced session expiry


@pytest.mark.timeout(60)
async def test_expire_session_deletes_the_ephemeral_nodes(zk_hosts: str, zk_path: str) -> None:
    victim = aiozk.ZKClient(zk_hosts, session_timeout=SESSION_TIMEOUT_S)
    await asyncio.wait_for(victim.start(), 20)
    async with client(zk_hosts) as observer:
        await observer.ensure_path(zk_path)
        await victim.create(f"{zk_path}/ephemeral", ephemeral=True)
        session_id, password = victim.session.session_id, victim.session.password
        assert session_id is not None

        await asyncio.to_thread(expire_session, zk_hosts, session_id, password)

        assert not await observer.exists(f"{zk_path}/ephemeral")
        with pytest.raises(SessionLostError):
            await asyncio.to_thread(expire_session, zk_hosts, session_id, password)
    # aiozk waits its session timeout for the answer to closing a session that is gone.
    with suppress(TimeoutError):
        await victim.close()


# TcpProxy


class EchoTarget:
    """A TCP server for the proxy to forward to: accepted sockets are handed to the test."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted: queue.Queue[socket.socket] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with closing(self._listener):
            while True:
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    return
                self.accepted.put(conn)

    def next_connection(self, timeout_s: float = 5.0) -> socket.socket:
        conn = self.accepted.get(timeout=timeout_s)
        conn.settimeout(5.0)
        return conn

    def close(self) -> None:
        self._listener.close()
        while not self.accepted.empty():
            self.accepted.get().close()


@pytest.fixture
def target() -> Iterator[EchoTarget]:
    echo = EchoTarget()
    yield echo
    echo.close()


def connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0)


def assert_silent(sock: socket.socket) -> None:
    """Nothing arrives, not even EOF: the connection is still open."""
    sock.settimeout(SILENCE_S)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(5.0)


def test_proxy_forwards_both_ways(tcp_proxy: TcpProxyFactory, target: EchoTarget) -> None:
    proxy = tcp_proxy("127.0.0.1", target.port)
    assert proxy.address == f"127.0.0.1:{proxy.port}"
    with connect(proxy) as client_side, target.next_connection() as server_side:
        client_side.sendall(b"ping")
        assert server_side.recv(4) == b"ping"
        server_side.sendall(b"pong")
        assert client_side.recv(4) == b"pong"
        assert proxy.connection_count == 1
        server_side.shutdown(socket.SHUT_WR)
        assert client_side.recv(1) == b"", "EOF is forwarded"
    wait_until(lambda: proxy.connection_count == 0, what="the proxy to drop the closed connection")


def test_cut_proxy_holds_bytes_and_eof_until_restored(tcp_proxy: TcpProxyFactory, target: EchoTarget) -> None:
    proxy = tcp_proxy("127.0.0.1", target.port)
    with connect(proxy) as client_side, target.next_connection() as server_side:
        proxy.cut()
        assert proxy.is_cut
        client_side.sendall(b"held up")
        server_side.sendall(b"held down")
        server_side.shutdown(socket.SHUT_WR)
        assert_silent(client_side)
        assert_silent(server_side)
        assert proxy.connection_count == 1

        with connect(proxy) as late_client:
            late_client.sendall(b"late")
            with pytest.raises(queue.Empty):
                target.next_connection(timeout_s=SILENCE_S)

            proxy.restore()
            assert server_side.recv(7) == b"held up"
            assert client_side.recv(9) == b"held down"
            assert client_side.recv(1) == b""
            with target.next_connection() as late_server_side:
                assert late_server_side.recv(4) == b"late"


def test_proxy_latency_delays_each_direction(tcp_proxy: TcpProxyFactory, target: EchoTarget) -> None:
    proxy = tcp_proxy("127.0.0.1", target.port)
    latency_s = 0.2
    with connect(proxy) as client_side, target.next_connection() as server_side:
        proxy.set_latency(latency_s)
        started = time.monotonic()
        client_side.sendall(b"a")
        assert server_side.recv(1) == b"a"
        server_side.sendall(b"b")
        assert client_side.recv(1) == b"b"
        assert time.monotonic() - started >= 2 * latency_s

        proxy.set_latency(0)
        started = time.monotonic()
        client_side.sendall(b"c")
        assert server_side.recv(1) == b"c"
        assert time.monotonic() - started < latency_s


def test_proxy_reset_closes_connections_abruptly(tcp_proxy: TcpProxyFactory, target: EchoTarget) -> None:
    proxy = tcp_proxy("127.0.0.1", target.port)
    with connect(proxy) as client_side, target.next_connection() as server_side:
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            client_side.recv(1)
        with pytest.raises(ConnectionResetError):
            server_side.recv(1)
    assert proxy.connection_count == 0
    with connect(proxy) as client_side, target.next_connection() as server_side:
        client_side.sendall(b"again")
        assert server_side.recv(5) == b"again"


def test_proxy_resets_clients_when_the_target_is_down(tcp_proxy: TcpProxyFactory) -> None:
    # Bound but not listening, for the whole test: connections are refused, and no other
    # process of a busy machine can take the port meanwhile (a closed port could be reused).
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
        proxy = tcp_proxy("127.0.0.1", closed_port)
        # The reset may come before connect() returns, or after.
        with pytest.raises(ConnectionResetError), connect(proxy) as client_side:
            client_side.recv(1)
