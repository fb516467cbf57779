"""Observing an election without joining it: the Observer, ``status`` and ``watch``, on real ZooKeeper."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import aiozk
import pytest
from _daemons import Daemons, LogEvent, run_daemon
from _elections import recorded_leadership, running
from _waits import eventually

from election_daemon import ConfigError, Election, SessionLostError
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.logs import SCHEMA_KEYS
from election_daemon.library._zk import ZooKeeper
from election_daemon.library.candidacy import encode_node_data
from election_daemon.library.observer import LeaderChange, Observer, Snapshot
from election_daemon.testing import TcpProxy, ZooKeeperEnsemble, expire_session

T = 2.0  # session timeout of the elections and observers here


def make(hosts: str, path: str, n: int, *, session_timeout_s: float = T) -> list[Election]:
    return [
        Election(hosts, path, identity=f"p{i}", data={"n": i}, session_timeout_s=session_timeout_s)
        for i in range(n)
    ]


class Collector:
    """Every item of an observer stream, gathered by a task, for tests to wait on."""

    def __init__(self, stream: AsyncIterator[LeaderChange]) -> None:
        self.items: list[LeaderChange] = []
        self._task = asyncio.ensure_future(self._collect(stream))

    async def _collect(self, stream: AsyncIterator[LeaderChange]) -> None:
        async for item in stream:
            self.items.append(item)

    async def wait_for(self, count: int, *, timeout_s: float = 20.0) -> list[LeaderChange]:
        await eventually(lambda: len(self.items) >= count, timeout_s=timeout_s, what=f"{count} changes")
        return self.items

    def close(self) -> None:
        self._task.cancel()


def queue_length(observer: Observer) -> int:
    view = observer.latest()
    return -1 if view is None else len(view.participants)


def leader_id(observer: Observer) -> str | None:
    view = observer.latest()
    return None if view is None or view.leader is None else view.leader.id


def ids(change: LeaderChange) -> tuple[str | None, str | None]:
    return (
        change.previous.id if change.previous is not None else None,
        change.leader.id if change.leader is not None else None,
    )


# -- the library -----------------------------------------------------------------------


async def test_snapshot_lists_the_queue_leader_first(zk_hosts: str, zk_path: str) -> None:
    async with running(make(zk_hosts, zk_path, 3)) as es:
        term = await recorded_leadership(es[0])
        async with Observer(zk_hosts, zk_path, session_timeout_s=T) as observer:
            snapshot = await observer.snapshot()
    assert [p.id for p in snapshot.participants] == ["p0", "p1", "p2"]
    assert snapshot.leader == snapshot.participants[0]
    assert snapshot.leader is not None and snapshot.leader.token == term.token
    assert snapshot.leader.session_id == term.session_id
    assert snapshot.leader.data == {"n": 0}
    # The leader was there before the observer: its node's creation time is the bound.
    assert snapshot.leader_for_s is not None and 0 <= snapshot.leader_for_s < 60
    assert not snapshot.takeover_seen
    assert snapshot.as_dict()["participants"][1]["id"] == "p1"


async def test_changes_from_a_missing_path_through_failovers_and_an_empty_queue(
    zk_hosts: str, zk_path: str
) -> None:
    observer = Observer(zk_hosts, f"{zk_path}/not-yet", session_timeout_s=T)
    changes = Collector(observer.changes())
    async with observer:
        first = observer.latest()
        assert first is not None and first.leader is None and first.participants == ()
        [p0, p1] = make(zk_hosts, f"{zk_path}/not-yet", 2)
        async with running([p0]):
            term0 = await p0.wait_for_leadership(10)
            [joined] = await changes.wait_for(1)
            assert ids(joined) == (None, "p0") and joined.reason == "first_contender"
            assert joined.token == term0.token
            async with running([p1]):
                await eventually(lambda: queue_length(observer) == 2, what="p1 in the view")
                await p0.stop()
                term1 = await p1.wait_for_leadership(10)
                # p0 -> p1 at once, or p0 -> nobody -> p1 if the observer read between p0's
                # end and p1's recorded term: p1 is leader only once it has taken over.
                moves = await until_leader(changes, 1, "p1")
                left, arrived = moves[0], moves[-1]
                assert ids(left)[0] == "p0" and left.reason == "stopped"
                assert left.previous is not None and left.previous.token == term0.token
                assert ids(arrived)[1] == "p1" and arrived.token == term1.token
                assert len(moves) in (1, 2) and (len(moves) == 2 or arrived.leaderless_s == 0.0)
                view = observer.latest()
                assert view is not None and view.takeover_seen and view.leader_since is not None
                assert abs(view.leader_since - arrived.time) < 1.0
                seen = len(changes.items)
        emptied = (await changes.wait_for(seen + 1))[seen]
        assert ids(emptied) == ("p1", None) and emptied.token is None
        [p2] = [Election(zk_hosts, f"{zk_path}/not-yet", identity="p2", session_timeout_s=T)]
        async with running([p2]):
            await p2.wait_for_leadership(10)
            back = (await until_leader(changes, len(changes.items), "p2"))[-1]
    changes.close()
    assert ids(back) == (None, "p2")
    assert back.leaderless_s is not None and back.leaderless_s >= 0


async def until_leader(changes: Collector, start: int, identity: str) -> list[LeaderChange]:
    """The changes from index ``start`` up to the one that names ``identity`` leader."""
    n = start + 1
    while True:
        items = await changes.wait_for(n)
        if ids(items[-1])[1] == identity:
            return list(items[start:])
        n += 1


async def expire_until_renewed(hosts: str, observer: Observer, *, attempts: int = 5) -> None:
    """Expire the observer's session and wait for its next one.

    expire_session takes the session over and then closes it; a client that reconnects in
    between takes it back, and the close is lost: the session lives on. Try again then.
    """
    zk = observer.session.zk
    old = zk.session_id
    assert old is not None
    for attempt in range(attempts):
        with contextlib.suppress(SessionLostError):  # expired after all, by an earlier attempt
            await asyncio.to_thread(expire_session, hosts, old, zk.session_password)
        try:
            await eventually(
                lambda: observer.connected and observer.session.session_id not in (None, old),
                timeout_s=2 * T,
                what="a new observer session",
            )
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


async def test_an_expired_observer_session_reports_no_change(zk_hosts: str, zk_path: str) -> None:
    async with running(make(zk_hosts, zk_path, 2)) as es:
        term0 = await es[0].wait_for_leadership(10)
        observer = Observer(zk_hosts, zk_path, session_timeout_s=T)
        changes = Collector(observer.changes())
        async with observer:
            await expire_until_renewed(zk_hosts, observer)
            await es[0].stop()
            term1 = await es[1].wait_for_leadership(10)
            moves = await until_leader(changes, 0, "p1")
            changes.close()
    # The renewed session saw the handover and nothing else: p0 -> p1, or p0 -> nobody -> p1
    # when it read between p0's end and p1's recorded term.
    assert [ids(m) for m in moves] in ([("p0", "p1")], [("p0", None), (None, "p1")])
    assert moves[0].previous is not None and moves[0].previous.token == term0.token
    assert moves[0].reason == "stopped"
    assert moves[-1].token == term1.token


async def test_a_change_made_while_cut_off_is_reported_once_back(
    zk_hosts: str, zk_path: str, tcp_proxy: Callable[..., TcpProxy]
) -> None:
    host, port = zk_hosts.split(",", maxsplit=1)[0].rsplit(":", 1)
    proxy = tcp_proxy(host, int(port))
    async with running(make(zk_hosts, zk_path, 2)) as es:
        await es[0].wait_for_leadership(10)
        observer = Observer(proxy.address, zk_path, session_timeout_s=T)
        views: list[Snapshot] = []
        changes = Collector(observer.changes())
        snapshots = observer.snapshots()

        async def collect_views() -> None:
            async for view in snapshots:
                views.append(view)

        viewer = asyncio.ensure_future(collect_views())
        async with observer:
            proxy.cut()
            await eventually(lambda: bool(views) and not views[-1].connected, timeout_s=3 * T, what="cut off")
            cut_view = views[-1]
            await es[0].stop()
            await recorded_leadership(es[1])
            proxy.restore()
            [change] = await changes.wait_for(1, timeout_s=8 * T)
            await eventually(lambda: views[-1].connected and views[-1].leader is not None, what="back")
            changes.close()
            viewer.cancel()
    assert ids(change) == ("p0", "p1")
    # It missed p0's record, but p1's names the term it replaced and how that ended.
    assert change.reason == "stopped"
    # It took over while the observer was away: it cannot have led since before the cut.
    assert views[-1].leader_since is not None and views[-1].leader_since >= cut_view.taken_at
    assert not views[-1].takeover_seen


async def test_an_observer_shares_an_application_client(zk_hosts: str, zk_path: str) -> None:
    client = aiozk.ZKClient(zk_hosts, session_timeout=T)
    await client.start()
    try:
        election = Election(None, zk_path, identity="shared", client=client)
        async with running([election]):
            term = await election.wait_for_leadership(10)
            async with Observer(None, zk_path, client=client) as observer:
                assert observer.session is election.session
                snapshot = await observer.snapshot()
            assert snapshot.leader is not None and snapshot.leader.token == term.token
            assert election.is_leader  # the observer leaving took nothing with it
        assert client.session.started
    finally:
        await client.close()


async def test_invalid_observer_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="path"):
        Observer("127.0.0.1:2181", "relative")
    with pytest.raises(ConfigError, match="hosts"):
        Observer("127.0.0.1:99999", "/e")
    with pytest.raises(ConfigError, match="session_timeout_s"):
        Observer("127.0.0.1:2181", "/e", session_timeout_s=0)
    with pytest.raises(ConfigError, match="connect_timeout_s"):
        Observer("127.0.0.1:2181", "/e", connect_timeout_s=float("nan"))


async def test_an_observer_never_names_as_leader_a_head_without_a_recorded_term(
    zk_hosts: str, zk_path: str
) -> None:
    # A node made by hand: a valid contender's name and data, first in the queue, but no term
    # recorded. It is next (it would lead once it took over), never leader.
    hand = ZooKeeper.create(zk_hosts, chroot=None, session_timeout_s=T)
    await hand.start(connect_timeout_s=10)
    try:
        await hand.ensure_path(zk_path)
        node, _ = await hand.create_ephemeral_sequential(
            f"{zk_path}/_c_{'b' * 32}-", encode_node_data("by-hand", {"n": -1})
        )
        observer = Observer(zk_hosts, zk_path, session_timeout_s=T)
        changes = Collector(observer.changes())
        async with observer:
            snapshot = await observer.snapshot()
            [election] = make(zk_hosts, zk_path, 1)
            async with running([election]):
                # Queued behind the hand-made head: it waits, and nobody leads meanwhile.
                await eventually(lambda: queue_length(observer) == 2, what="p0 in the view")
                view = observer.latest()
                assert election.term is None and await election.leader() is None
                code, out, _ = await status("--hosts", zk_hosts, "--path", zk_path, "--json")
                text_code, text, _ = await status("--hosts", zk_hosts, "--path", zk_path)
            assert changes.items == []
        changes.close()
    finally:
        await hand.close()
    for seen in (snapshot, view):
        assert seen is not None and seen.leader is None
        head = seen.participants[0]
        assert (head.id, head.node, head.is_leader, head.is_next) == ("by-hand", node, False, True)
        assert head.term_started_at is None and head.as_dict()["token"] is None
    assert view is not None
    assert [(p.id, p.is_leader, p.is_next) for p in view.participants[1:]] == [("p0", False, False)]
    record = json.loads(out)
    assert code == ExitCode.OPERATION_FAILED and record["leader"] is None
    assert [(p["id"], p["is_leader"], p["is_next"], p["token"]) for p in record["participants"]] == [
        ("by-hand", False, True, None),
        ("p0", False, False, None),
    ]
    lines = text.splitlines()
    assert text_code == ExitCode.OPERATION_FAILED
    assert lines[0] == f"{zk_path}: no leader; next by-hand (taking over)"
    assert lines[2].split()[:3] == [">", "by-hand", "native"]  # no token: it holds none


async def test_a_change_names_how_the_term_ended_expired_or_stopped(zk_hosts: str, zk_path: str) -> None:
    observer = Observer(zk_hosts, zk_path, session_timeout_s=T)
    changes = Collector(observer.changes())
    with Daemons() as daemons:
        killed = daemons.start(zk_hosts, zk_path, identity="killed", session_timeout_s=T)
        elected = await asyncio.to_thread(killed.wait_for, "elected", timeout_s=30)
        [p1] = make(zk_hosts, zk_path, 2)[1:]
        async with observer, running([p1]):
            await eventually(
                lambda: queue_length(observer) == 2 and leader_id(observer) == "killed",
                what="killed leading with p1 queued",
            )
            killed.kill()  # SIGKILL: no goodbye, its session expires after T
            term1 = await p1.wait_for_leadership(10 * T)
            moves = await until_leader(changes, 0, "p1")
            await p1.stop()
            [stopped] = (await changes.wait_for(len(changes.items) + 1))[-1:]
        changes.close()
    # The first view may have shown it next, before its term was recorded: (None -> killed).
    [start] = [i for i, m in enumerate(moves) if ids(m)[0] == "killed"]
    moves = moves[start:]
    expired = moves[0]
    assert ids(expired)[0] == "killed" and expired.reason == "session_expired"
    assert expired.previous is not None and expired.previous.token == elected["token"]
    assert moves[-1].token == term1.token and len(moves) in (1, 2)
    assert ids(stopped) == ("p1", None) and stopped.reason == "stopped"


# -- status ------------------------------------------------------------------------------


async def status(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = await asyncio.to_thread(run_daemon, ["status", *args], env=env)
    return done.returncode, done.stdout, done.stderr


async def test_status_json_lists_everyone_leader_first_through_a_failover(
    zk_hosts: str, zk_path: str
) -> None:
    async with running(make(zk_hosts, zk_path, 3)) as es:
        term0 = await recorded_leadership(es[0])
        code, out, err = await status("--hosts", zk_hosts, "--path", zk_path, "--json")
        assert (code, err) == (0, ""), err
        record = json.loads(out)
        assert list(record) == ["path", "leader", "leader_for_s", "participants", "acl", "acl_warning"]
        assert record["acl"] == [{"id": "world:anyone", "perms": "cdrwa"}] and record["acl_warning"]
        assert [p["id"] for p in record["participants"]] == ["p0", "p1", "p2"]
        assert record["participants"][0] == record["leader"]
        assert record["leader"]["token"] == term0.token
        assert record["leader"]["session_id"] == f"0x{term0.session_id:x}"
        assert record["leader"]["is_leader"] is True and record["leader"]["data"] == {"n": 0}
        assert [p["is_leader"] for p in record["participants"]] == [True, False, False]
        assert [p["is_next"] for p in record["participants"]] == [False, False, False]
        # Only the leader holds a token; the others show their node's czxid as such.
        assert [p["token"] for p in record["participants"][1:]] == [None, None]
        assert record["leader"]["czxid"] == term0.token
        assert record["leader"]["term_started_at"] is not None
        assert isinstance(record["leader_for_s"], float) and record["leader_for_s"] >= 0

        await es[0].stop()
        term1 = await recorded_leadership(es[1])
        code, out, _ = await status(
            "--json", env={"ELECTION_DAEMON_HOSTS": zk_hosts, "ELECTION_DAEMON_PATH": zk_path}
        )
        record = json.loads(out)
        assert code == 0
        assert [p["id"] for p in record["participants"]] == ["p1", "p2"]
        assert record["leader"]["token"] == term1.token > term0.token


async def test_status_text_is_aligned_and_escapes_what_contenders_publish(
    zk_hosts: str, zk_path: str
) -> None:
    evil = "evil\x1b[2J\u202e\x07" + "e" * 500
    async with running(make(zk_hosts, zk_path, 1)) as es:
        term = await recorded_leadership(es[0])
        # Any session that may write under the path can publish anything: a foreign contender.
        foreign = ZooKeeper.create(zk_hosts, chroot=None, session_timeout_s=T)
        await foreign.start(connect_timeout_s=10)
        try:
            await foreign.create_ephemeral_sequential(
                f"{zk_path}/_c_{'a' * 32}-", encode_node_data(evil, {"blob": "\x1b]0;pwned\x07" * 20_000})
            )
            code, out, err = await status("--hosts", zk_hosts, "--path", zk_path)
            json_code, json_out, _ = await status("--hosts", zk_hosts, "--path", zk_path, "--json")
        finally:
            await foreign.close()
    # The path is open (no ACL options): status says so on stderr, and shows the ACL last.
    assert code == 0 and err.startswith("election-daemon: warning: the ACL of"), err
    lines = out.splitlines()
    assert lines[-1] == "acl: world:anyone:cdrwa"
    assert lines[0].startswith(f"{zk_path}: leader p0 (token {term.token}), leading for at most ")
    assert lines[1].split() == ["ID", "RECIPE", "TOKEN", "SESSION", "PRIORITY", "NODE", "DATA"]
    assert lines[2].split()[:4] == ["*", "p0", "native", str(term.token)]
    assert lines[2].index("p0") == lines[3].index("evil")  # aligned columns
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b" in lines[3] and "\\u202e" in lines[3]
    assert max(len(line) for line in lines) < 300
    # JSON keeps everything, escaped to ASCII.
    assert json_code == 0 and json_out.isascii()
    assert json.loads(json_out)["participants"][1]["id"] == evil


async def test_status_exit_codes(zk_hosts: str, zk_path: str, tcp_proxy: Callable[..., TcpProxy]) -> None:
    # No such path (a typo, say): one line naming --path, exit 2, nothing on stdout.
    for json_flag in (["--json"], []):
        code, out, err = await status("--hosts", zk_hosts, "--path", f"{zk_path}/nobody", *json_flag)
        assert (code, out) == (ExitCode.USAGE, "")
        assert err == f"election-daemon: error: --path: no election at {zk_path}/nobody: no such path\n"
    # An election nobody is in any more (its path stays): printed as ever, exit 8.
    async with Election(zk_hosts, zk_path, identity="gone", session_timeout_s=T):
        pass
    code, out, _ = await status("--hosts", zk_hosts, "--path", zk_path, "--json")
    assert code == ExitCode.OPERATION_FAILED
    record = json.loads(out)
    assert (record["path"], record["leader"], record["participants"]) == (zk_path, None, [])
    code, out, _ = await status("--hosts", zk_hosts, "--path", zk_path)
    assert code == ExitCode.OPERATION_FAILED and out.startswith(f"{zk_path}: no leader\n")
    code, out, _ = await status("--help")
    assert code == 0 and "8  OPERATION_FAILED  the election has no leader" in out
    for args, field in [
        (["--hosts", zk_hosts], "--path"),
        (["--path", zk_path], "--hosts"),
        (["--hosts", "127.0.0.1:99999", "--path", zk_path], "--hosts"),
        (["--hosts", zk_hosts, "--path", "relative"], "--path"),
        (["--hosts", zk_hosts, "--path", zk_path, "--connect-timeout", "soon"], "--connect-timeout"),
        (["--hosts", zk_hosts, "--path", zk_path, "--bogus"], "command line"),
    ]:
        code, out, err = await status(*args)
        assert code == 2, (args, err)
        assert err.startswith(f"election-daemon: error: {field}") and err.count("\n") == 1, err
        assert out == ""
    code, _, err = await status(
        "--path", zk_path, env={"ELECTION_DAEMON_HOSTS": "nowhere:1:2", "ELECTION_DAEMON_PATH": "/x"}
    )
    assert code == 2 and "ELECTION_DAEMON_HOSTS" in err

    proxy = tcp_proxy("127.0.0.1", 9)  # accepts, forwards nothing: like a dead network
    proxy.cut()
    code, out, err = await status("--hosts", proxy.address, "--path", zk_path, "--connect-timeout", "1")
    assert code == 3 and out == ""
    assert err.startswith("election-daemon: error: no ZooKeeper server answered") and err.count("\n") == 1


# -- watch -------------------------------------------------------------------------------


def watch_args(hosts: str, path: str) -> list[str]:
    return ["watch", "--hosts", hosts, "--path", path, "--json", "--session-timeout", f"{T:g}"]


def leader_changes(events: list[LogEvent]) -> list[LogEvent]:
    return [e for e in events if e.name == "leader_changed"]


async def test_watch_reports_a_failover_with_its_tokens(zk_hosts: str, zk_path: str) -> None:
    with Daemons() as daemons:
        async with running(make(zk_hosts, zk_path, 2)) as es:
            term0 = await recorded_leadership(es[0])
            watch = daemons.start_args(watch_args(zk_hosts, zk_path), name="watch")
            observed = await asyncio.to_thread(watch.wait_for, "leader_observed", timeout_s=30)
            assert (observed["id"], observed["token"], observed["state"]) == ("p0", term0.token, "leading")
            await es[0].stop()
            term1 = await es[1].wait_for_leadership(10)
            changed = await asyncio.to_thread(
                watch.wait_for, "leader_changed", lambda e: e["id"] == "p1", timeout_s=20
            )
            # p0 -> p1, or p0 -> nobody -> p1 if watch read before p1 recorded its term.
            left = watch.wait_for("leader_changed")
        assert list(changed)[: len(SCHEMA_KEYS)] == list(SCHEMA_KEYS)
        assert changed["state"] == "leading" and changed["previous_state"] is None
        assert (left["previous_id"], left["previous_token"]) == ("p0", term0.token)
        assert left["path"] == zk_path and left["reason"] == "stopped"
        assert left is changed or (left["id"], changed["previous_id"]) == (None, None)
        assert (changed["id"], changed["token"]) == ("p1", term1.token)
        assert changed["session_id"] == f"0x{term1.session_id:x}"
        assert changed["timestamp"].endswith("Z")
        # The last contender left too: "no leader" is a change.
        emptied = await asyncio.to_thread(
            watch.wait_for, "leader_changed", lambda e: e["previous_id"] == "p1", timeout_s=20
        )
        assert emptied["state"] is None and emptied["id"] is None
        assert emptied["reason"] == "stopped"
        watch.terminate()
        assert await asyncio.to_thread(watch.wait, 10) == 0
        assert len(leader_changes(watch.events())) == (2 if left is changed else 3)
        assert watch.stderr == ""


@pytest.mark.timeout(150)
@pytest.mark.ensemble(max_session_timeout_ms=20_000)
async def test_watch_rides_through_a_killed_server_without_a_false_change(
    zk_ensemble: ZooKeeperEnsemble,
) -> None:
    path = "/election/watched"
    hosts = zk_ensemble.hosts
    # Long enough for the contenders' sessions to outlive a ZooKeeper leader election.
    es = make(hosts, path, 2, session_timeout_s=8.0)
    with Daemons() as daemons:
        async with running(es):
            term0 = await es[0].wait_for_leadership(20)
            watch = daemons.start_args(watch_args(hosts, path), name="watch")
            await asyncio.to_thread(watch.wait_for, "leader_observed", timeout_s=30)
            contenders = {e.session.session_id for e in es}

            def watch_server() -> list[int]:
                return [
                    i
                    for i, server in enumerate(zk_ensemble.servers)
                    if server.session_ids() - contenders - {0}
                ]

            [index] = await asyncio.to_thread(watch_server)
            killed = zk_ensemble.servers[index]
            await asyncio.to_thread(killed.kill)

            async def reconnected() -> bool:
                return bool(await asyncio.to_thread(watch_server))

            deadline = asyncio.get_running_loop().time() + 30
            while not await reconnected():
                assert asyncio.get_running_loop().time() < deadline, "watch did not reconnect"
                await asyncio.sleep(0.05)
            await eventually(lambda: es[0].is_leader, timeout_s=30, what="p0 leading again")
            assert es[0].term is not None and es[0].term.token == term0.token
            await es[0].stop()
            term1 = await es[1].wait_for_leadership(30)
            changed = await asyncio.to_thread(
                watch.wait_for, "leader_changed", lambda e: e["id"] == "p1", timeout_s=30
            )
            left = watch.wait_for("leader_changed")
        assert (left["previous_id"], left["previous_token"]) == ("p0", term0.token)
        assert (changed["id"], changed["token"]) == ("p1", term1.token)
        watch.terminate()
        assert await asyncio.to_thread(watch.wait, 10) == 0
        # The only changes are the real ones: the handover (through "no leader" if watch read
        # before p1 recorded its term), then maybe p1 leaving at the end.
        seen = [(e["previous_id"], e["id"]) for e in leader_changes(watch.events())]
        handover = [("p0", "p1")] if left is changed else [("p0", None), (None, "p1")]
        assert seen in (handover, [*handover, ("p1", None)])


async def test_watch_prints_lines_for_people(zk_hosts: str, zk_path: str) -> None:
    with Daemons() as daemons:
        async with running(make(zk_hosts, zk_path, 2)) as es:
            term0 = await recorded_leadership(es[0])
            watch = daemons.start_args(
                ["watch", "--hosts", zk_hosts, "--path", zk_path, "--session-timeout", "2"], name="watch"
            )
            first = await asyncio.to_thread(
                watch.wait_for_line, lambda line: "watching" in line, timeout_s=30
            )
            assert f"watching {zk_path}: leader p0 (token {term0.token}), leading for at most" in first
            await es[0].stop()
            term1 = await es[1].wait_for_leadership(10)
            arrived = f"-> p1 (token {term1.token})"
            await asyncio.to_thread(watch.wait_for_line, lambda line: arrived in line, timeout_s=20)
            left = watch.wait_for_line(lambda line: "changed" in line)
        # At once, or through "no leader" if watch read before p1 recorded its term.
        assert f"leader changed: p0 (token {term0.token}) -> " in left and left.endswith("  (stopped)")
        assert arrived in left or f"leader changed: no leader {arrived}" in "\n".join(watch.lines)
        watch.send_signal(2)  # SIGINT, as Ctrl-C
        assert await asyncio.to_thread(watch.wait, 10) == 0
