"""The election against real ZooKeeper servers, with real faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import aiozk
import pytest
from _elections import Recorder, T, leaders, running, strictly_increasing
from _waits import eventually

from election_daemon import ConfigError, Election, ElectionState, NoNodeError, NotLeaderError, Term
from election_daemon.library._zk import GuardFailedError
from election_daemon.testing import TcpProxy, ZooKeeperEnsemble, expire_session


def make(hosts: str, path: str, rec: Recorder, n: int) -> list[Election]:
    return [rec.attach(Election(hosts, path, identity=f"p{i}", session_timeout_s=T)) for i in range(n)]


async def test_three_contenders_exactly_one_leader(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 3)) as es:
        await eventually(lambda: len(leaders(es)) == 1, what="one leader")
        [leader] = leaders(es)
        assert leader is es[0]
        queue = await es[2].participants()
        assert [p.id for p in queue] == ["p0", "p1", "p2"]
        assert [p.is_leader for p in queue] == [True, False, False]
        assert queue[0].token == leader.term.token if leader.term else False
        assert (await es[1].leader()) == queue[0]
        assert [e.state for e in es[1:]] == [ElectionState.FOLLOWING] * 2


async def test_leader_stop_hands_over_in_queue_order(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 3)) as es:
        first = await es[0].wait_for_leadership(10)
        await es[0].stop()
        second = await es[1].wait_for_leadership(10)
        assert not es[2].is_leader
        await es[1].stop()
        third = await es[2].wait_for_leadership(10)
        assert first.token < second.token < third.token
        assert rec.events("p0", "revoked")[0].reason == "stopped"


async def test_resign_rejoins_at_the_back(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 2)) as es:
        first = await es[0].wait_for_leadership(10)
        await es[0].resign()
        second = await es[1].wait_for_leadership(10)
        assert es[0].state is ElectionState.FOLLOWING
        assert [p.id for p in await es[0].participants()] == ["p1", "p0"]
        assert second.token > first.token
        assert rec.events("p0", "revoked")[0].reason == "resigned"


async def test_cut_off_leader_is_revoked_before_anyone_else_is_elected(
    zk_hosts: str, zk_path: str, tcp_proxy: Callable[..., TcpProxy]
) -> None:
    host, port = zk_hosts.split(",", maxsplit=1)[0].rsplit(":", 1)
    proxy = tcp_proxy(host, int(port))
    rec = Recorder()
    cut = rec.attach(Election(proxy.address, zk_path, identity="cut", session_timeout_s=T))
    other = rec.attach(Election(zk_hosts, zk_path, identity="other", session_timeout_s=T))
    async with running([cut, other]):
        first = await cut.wait_for_leadership(10)
        proxy.cut()
        second = await other.wait_for_leadership(4 * T)
        [revoked] = rec.events("cut", "revoked")
        [elected] = rec.events("other", "elected")
        margin_s = elected.monotonic_s - revoked.monotonic_s
        # The lease ends 2T/3 after the last answered send; ZooKeeper expires at T or later.
        assert margin_s > 0.2 * T, f"revoked only {margin_s:.3f} s before the next leader"
        assert revoked.reason in ("lease_expired", "connection_lost")
        assert second.token > first.token
        proxy.restore()
        # Its session expired meanwhile: it must come back as a follower with a new node.
        await eventually(lambda: cut.state is ElectionState.FOLLOWING, timeout_s=6 * T, what="rejoin")
        assert not cut.is_leader
        assert rec.events("cut", "session_lost") or any(
            t.reason == "session_expired" for t in rec.events("cut", "reconnected")
        )


async def test_session_expiry_rejoins_with_a_new_node(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 2)) as es:
        first = await es[0].wait_for_leadership(10)
        old_node = es[0].node
        zk = es[0].session.zk
        assert zk.session_id is not None
        await asyncio.to_thread(expire_session, zk_hosts, zk.session_id, zk.session_password)
        second = await es[1].wait_for_leadership(4 * T)
        await eventually(lambda: es[0].state is ElectionState.FOLLOWING, timeout_s=4 * T, what="rejoin")
        assert es[0].node != old_node
        assert second.token > first.token
        assert rec.events("p0", "revoked")[0].reason in (
            "session_expired",
            "connection_lost",
            "lease_expired",
        )
        await es[1].stop()
        third = await es[0].wait_for_leadership(10)
        assert third.token > second.token


async def test_operator_deleting_the_leader_node_revokes_at_once(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 2)) as es:
        first = await es[0].wait_for_leadership(10)
        await es[1].session.zk.delete(first.node)
        second = await es[1].wait_for_leadership(10)
        await eventually(lambda: bool(rec.events("p0", "revoked")), what="revocation")
        assert rec.events("p0", "revoked")[0].reason == "node_deleted"
        await eventually(lambda: es[0].state is ElectionState.FOLLOWING, what="rejoin")
        assert second.token > first.token


async def test_election_path_deleted_mid_run(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 3)) as es:
        first = await es[0].wait_for_leadership(10)
        admin = es[2].session.zk
        for _ in range(20):  # contenders race to recreate it; delete until it is really gone
            names: list[str] = []
            with contextlib.suppress(NoNodeError):
                names = await admin.children(zk_path)
            for name in names:
                with contextlib.suppress(Exception):
                    await admin.delete(f"{zk_path}/{name}")
            with contextlib.suppress(Exception):
                await admin.delete(zk_path)
            if rec.events("p0", "revoked"):
                break
        await eventually(lambda: len(leaders(es)) == 1 and rec.tokens()[-1] != first.token, what="a new term")
        await eventually(
            lambda: sorted(e.state.value for e in es) == ["following", "following", "leading"],
            what="all rejoined",
        )
        assert strictly_increasing(rec.tokens())
        assert len(await es[0].participants()) == 3


async def test_callbacks_contract(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    [e] = make(zk_hosts, zk_path, rec, 1)
    calls: list[str] = []
    release = asyncio.Event()

    def broken(term: Term) -> None:
        calls.append("broken")
        raise RuntimeError("user bug")

    async def slow(term: Term) -> None:
        calls.append("slow-start")
        await release.wait()

    e.on_elected(broken)
    e.on_elected(slow)
    e.on_revoked(lambda reason: calls.append(f"revoked:{reason}"))
    async with running([e]):
        await e.wait_for_leadership(10)
        await eventually(lambda: "slow-start" in calls, what="slow callback")
        # A slow on_elected does not hold leadership hostage.
        await e.resign()
        assert calls.count("revoked:resigned") == 1
        await e.wait_for_leadership(10)
        release.set()
    assert calls.count("broken") == 2
    assert calls.count("revoked:resigned") + calls.count("revoked:stopped") == 2


async def test_many_elections_share_one_client(zk_hosts: str, zk_path: str) -> None:
    client = aiozk.ZKClient(zk_hosts, session_timeout=T)
    await client.start()
    try:
        es = [Election(None, f"{zk_path}/e{i}", identity=f"p{i}", client=client) for i in range(20)]
        async with running(es):
            await eventually(lambda: all(e.is_leader for e in es), what="every election led")
            # One task per election (waiting), plus the shared session's two: no polling.
            ours = [t for t in asyncio.all_tasks() if t.get_name().startswith("election")]
            assert len(ours) == len(es) + 2
            assert len({id(e.session) for e in es}) == 1
        assert client.session.started  # not ours to close
    finally:
        await client.close()


async def test_published_data_is_discoverable(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    a = rec.attach(
        Election(zk_hosts, zk_path, identity="a", data={"addr": "10.0.0.1:8080"}, session_timeout_s=T)
    )
    b = rec.attach(Election(zk_hosts, zk_path, identity="b", data=b"\x00raw", session_timeout_s=T))
    async with running([a, b]):
        leader = await b.leader()
        assert leader is not None and leader.id == "a" and leader.data == {"addr": "10.0.0.1:8080"}
        queue = await a.participants()
        assert queue[1].data == b"\x00raw"
        assert queue[0].session_id == a.session.session_id


async def test_guarded_writes_fail_once_the_term_is_over(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 2)) as es:
        admin = es[1].session.zk
        await admin.ensure_path(f"{zk_path}-register")
        term = await es[0].wait_for_leadership(10)
        await es[0].guarded_set(f"{zk_path}-register", b"one")
        assert (await admin.get(f"{zk_path}-register"))[0] == b"one"
        await es[0].resign()
        with pytest.raises(NotLeaderError):
            await es[0].guarded_set(f"{zk_path}-register", b"stale")
        # A paused leader that still believes would send exactly this: ZooKeeper refuses it.
        with pytest.raises(GuardFailedError):
            await es[0].session.zk.guarded_set(term.node, f"{zk_path}-register", b"stale")
        assert (await admin.get(f"{zk_path}-register"))[0] == b"one"


RIDE_T = 6.0
"""Long enough for a ZooKeeper server's restart (and a quorum's new election) within the lease."""


async def _sample_one_leader(es: Sequence[Election], until: asyncio.Future[Any]) -> None:
    while not until.done():
        assert len(leaders(es)) <= 1
        await asyncio.sleep(0.01)


@pytest.mark.ensemble(max_session_timeout_ms=20_000)
@pytest.mark.timeout(120)
async def test_the_leader_rides_through_a_rolling_restart_and_its_servers_death(
    zk_ensemble: ZooKeeperEnsemble,
) -> None:
    """A lost connection is not a lost term: while the lease runs, the leader keeps its term
    across every server of the ensemble restarted in turn, and the ZooKeeper leader killed."""
    rec = Recorder()
    es = [
        rec.attach(Election(zk_ensemble.hosts, "/election/ride", identity=f"p{i}", session_timeout_s=RIDE_T))
        for i in range(3)
    ]
    async with running(es):
        first = await es[0].wait_for_leadership(10)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sampler = asyncio.ensure_future(_sample_one_leader(es, done))
        try:
            for server in zk_ensemble.servers:
                await asyncio.to_thread(server.stop)
                await asyncio.to_thread(server.start)
                await asyncio.to_thread(zk_ensemble.wait_quorum)
            ensemble_leader = await asyncio.to_thread(zk_ensemble.leader)
            await asyncio.to_thread(ensemble_leader.kill)
            await asyncio.to_thread(zk_ensemble.wait_quorum)
            await asyncio.to_thread(ensemble_leader.start)
            await eventually(es[0].session.is_connected, timeout_s=RIDE_T, what="reconnection")
        finally:
            done.set_result(None)
            await sampler
        assert es[0].is_leader and es[0].term is first
        assert rec.events("p0", "revoked") == []
        assert [t.token for t in rec.transitions if t.event == "elected"] == [first.token]
        # Each time its server went, the leader said so, and said when it was confirmed again.
        assert rec.events("p0", "disconnected"), "no disconnection seen: the faults missed"
        assert len(rec.events("p0", "reconnected")) >= len(rec.events("p0", "disconnected"))


@pytest.mark.ensemble
async def test_killing_the_leaders_server_leaves_exactly_one_leader(zk_ensemble: ZooKeeperEnsemble) -> None:
    rec = Recorder()
    es = make(zk_ensemble.hosts, "/election/ensemble", rec, 3)
    async with running(es):
        first = await es[0].wait_for_leadership(10)
        sid = es[0].session.session_id
        assert sid is not None
        server = await asyncio.to_thread(zk_ensemble.server_of_session, sid)
        assert server is not None
        await asyncio.to_thread(server.kill)
        # Either it rides through on its lease, or the lease runs out and someone else leads.
        await eventually(
            lambda: bool(rec.events("p0", "disconnected") or rec.events("p0", "revoked")),
            timeout_s=4 * T,
            what="the leader to notice",
        )
        await eventually(lambda: len(leaders(es)) == 1, timeout_s=6 * T, what="one leader again")
        # Give any second leader every chance to appear: one more full session timeout.
        deadline = asyncio.get_running_loop().time() + T
        while asyncio.get_running_loop().time() < deadline:
            assert len(leaders(es)) <= 1
            await asyncio.sleep(0.02)
        assert len(leaders(es)) == 1
        assert all(t >= first.token for t in rec.tokens())
        assert strictly_increasing(rec.tokens())


async def test_invalid_configuration_names_the_field() -> None:
    from election_daemon import ConfigError

    with pytest.raises(ConfigError, match="path"):
        Election("127.0.0.1:2181", "relative/path")
    with pytest.raises(ConfigError, match="hosts"):
        Election("127.0.0.1:99999", "/e")
    with pytest.raises(ConfigError, match="session_timeout"):
        Election("127.0.0.1:2181", "/e", session_timeout_s=-1)
    with pytest.raises(ConfigError, match="data"):
        Election("127.0.0.1:2181", "/e", data=object())
    with pytest.raises(ConfigError, match="data"):
        Election("127.0.0.1:2181", "/e", data=b"x" * 2_000_000)


async def test_unreachable_zookeeper_times_out_clearly(tcp_proxy: Callable[..., TcpProxy]) -> None:
    from election_daemon import ConnectTimeoutError

    proxy = tcp_proxy("127.0.0.1", 9)  # accepts, forwards nothing: like a dead network
    proxy.cut()
    e = Election(proxy.address, "/e", connect_timeout_s=1.0, session_timeout_s=T)
    with pytest.raises(ConnectTimeoutError):
        await e.start()
    assert e.state is ElectionState.STOPPED


@pytest.mark.ensemble
async def test_killing_the_zookeeper_leader_keeps_our_session(zk_ensemble: ZooKeeperEnsemble) -> None:
    """A ZooKeeper leader election re-arms every session: ours must survive it, and so must our term."""
    rec = Recorder()
    zk_leader = await asyncio.to_thread(zk_ensemble.leader)
    e = rec.attach(Election(zk_leader.address, "/election/zk-leader", identity="p0", session_timeout_s=4.0))
    e2 = rec.attach(Election(zk_ensemble.hosts, "/election/zk-leader", identity="p1", session_timeout_s=4.0))
    async with running([e]):
        first = await e.wait_for_leadership(10)
        session_id = e.session.session_id
        # Now let it reconnect anywhere, as a real client would.
        e.session.zk.client.session.hosts = [
            (host, int(port)) for host, port in (s.address.rsplit(":", 1) for s in zk_ensemble.servers)
        ]
        async with running([e2]):
            await asyncio.to_thread(zk_leader.kill)
            # It rides through on its lease if the new quorum serves in time, else it is
            # revoked and resumes its term: either way the session, and the token, survive.
            await eventually(
                lambda: bool(rec.events("p0", "disconnected")), timeout_s=8, what="disconnection"
            )
            await eventually(
                lambda: e.is_leader and e.session.is_connected(), timeout_s=12, what="leading again"
            )
            assert e.session.session_id == session_id
            assert e.term is not None and e.term.token == first.token
            assert not rec.events("p0", "session_lost")
            assert not rec.events("p1", "elected")


async def test_guarded_set_says_why_it_refused(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 1)) as es:
        await es[0].wait_for_leadership(10)
        with pytest.raises(ConfigError, match="value"):
            await es[0].guarded_set(f"{zk_path}-register", "text")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="path"):
            await es[0].guarded_set("relative", b"x")
        # A missing target is the write's own failure, not a term that ended.
        with pytest.raises(NoNodeError):
            await es[0].guarded_set(f"{zk_path}-missing", b"x")
        assert es[0].is_leader


async def test_changes_are_subscribed_at_the_call_and_end_with_stop(zk_hosts: str, zk_path: str) -> None:
    e = Election(zk_hosts, zk_path, identity="solo", session_timeout_s=T)
    changes = e.changes()  # taken before start(), iterated after: nothing is missed
    await e.start()
    await e.wait_for_leadership(10)
    await e.stop()
    events = [t.event async for t in changes]
    assert events[0] == "starting"
    assert "elected" in events and events[-1] == "stopped"
    assert [t async for t in e.changes()] == []  # taken after the end: ends at once


async def test_async_with_starts_and_stops_even_when_the_block_raises(zk_hosts: str, zk_path: str) -> None:
    rec = Recorder()
    async with running(make(zk_hosts, zk_path, rec, 1)) as [watcher]:
        async with rec.attach(Election(zk_hosts, zk_path, identity="with", session_timeout_s=T)) as e:
            assert e.state is not ElectionState.IDLE  # started: the node is in the queue
            assert [p.id for p in await watcher.participants()] == ["p0", "with"]
        # Left at the end of the block, not when the session expires.
        assert e.state is ElectionState.STOPPED
        assert [p.id for p in await watcher.participants()] == ["p0"]

        await watcher.stop()
        with pytest.raises(RuntimeError, match="boom"):
            async with rec.attach(Election(zk_hosts, zk_path, identity="raiser", session_timeout_s=T)) as e:
                await e.wait_for_leadership(10)
                raise RuntimeError("boom")
        assert e.state is ElectionState.STOPPED and not e.is_leader
        assert [t.reason for t in rec.events("raiser", "revoked")] == ["stopped"]
        async with Election(zk_hosts, zk_path, identity="next", session_timeout_s=T) as after:
            assert [p.id for p in await after.participants()] == ["next"]


async def test_a_create_replayed_on_a_later_session_leaves_no_node_behind(
    zk_hosts: str, zk_path: str
) -> None:
    """aiozk retries a create cut off by a lost connection on whatever session exists by then;
    a candidacy of the expired session must not keep that node, which would block the queue."""
    from election_daemon.errors import SessionLostError
    from election_daemon.library._zk import ZooKeeper
    from election_daemon.library.candidacy import Candidacy

    zk = ZooKeeper.create(zk_hosts, chroot=None, session_timeout_s=T)
    await zk.start(connect_timeout_s=10)
    try:
        live = zk.session_id
        assert live is not None
        stale = Candidacy(zk, zk_path, b'{"id":"x"}', session_id=live + 1)  # the session before
        with pytest.raises(SessionLostError):
            await stale.join()
        assert await zk.children(zk_path) == []
        assert stale.node is None
    finally:
        await zk.close()


@pytest.mark.timeout(60)
async def test_a_session_timeout_nobody_asked_for_is_refused_before_joining() -> None:
    from election_daemon import SessionTimeoutError

    rec = Recorder()
    with ZooKeeperEnsemble(1, max_session_timeout_ms=4000) as server:
        refused = rec.attach(Election(server.hosts, "/e", identity="refused", session_timeout_s=10))
        with pytest.raises(SessionTimeoutError, match="4 s, not 10 s"):
            await refused.start()
        assert refused.state is ElectionState.STOPPED
        assert not [t for t in rec.transitions if t.event in ("joined", "elected")]
        ranged = Election(
            server.hosts, "/e", identity="ranged", session_timeout_s=10, session_timeout_range_s=(2, 10)
        )
        async with running([ranged]):
            assert ranged.negotiated_session_timeout_s == 4.0
            # Nothing of the refused one was left in the queue.
            assert [p.id for p in await ranged.participants()] == ["ranged"]
    with pytest.raises(ConfigError, match="session_timeout_range_s"):
        Election("127.0.0.1:2181", "/e", session_timeout_range_s=(10, 2))
