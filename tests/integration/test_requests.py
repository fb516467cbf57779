"""What joining and failing over cost in requests, and what 2,000 resigns leave behind.

Requests are counted at the client (``ZooKeeper.requests_sent``), leaving out the session's
own lease probes (``Sync``), which belong to the client rather than to any election.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aiozk
import pytest
from _elections import Recorder, T, running
from _waits import eventually
from kazoo.client import KazooClient

from election_daemon import Election, ElectionState, Transition
from election_daemon.library.session import Session


def sent(election: Election) -> Counter[str]:
    """Requests of ``election``'s client so far, without the lease probes."""
    counts = Counter(election.session.zk.requests_sent)
    del counts["Sync"]
    return counts


class AtEdges:
    """The requests of each election's client as they stood at each of its transitions."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Counter[str]]] = []

    def attach(self, election: Election) -> Election:
        def listener(t: Transition) -> None:
            self.seen.append((t.id, t.event, sent(election)))

        election.add_listener(listener)
        return election

    def at(self, identity: str, event: str, nth: int = 0) -> Counter[str]:
        return [c for i, e, c in self.seen if (i, e) == (identity, event)][nth]


@pytest.mark.timeout(60)
async def test_a_join_costs_three_requests_and_the_term_two_more(
    zk_hosts: str, zk_path: str, kazoo: KazooClient
) -> None:
    kazoo.ensure_path(zk_path)  # an election path in use: creating it is not the join's cost
    edges = AtEdges()
    es = [edges.attach(Election(zk_hosts, zk_path, identity=f"p{i}", session_timeout_s=T)) for i in range(3)]
    async with running(es):
        await eventually(
            lambda: len([1 for i, e, _ in edges.seen if e == "term_recorded"]) == 1, what="record"
        )
        # The head: its node, the listing, its own node read and watched; elected then.
        assert edges.at("p0", "elected") == Counter({"Create2": 1, "GetChildren2": 1, "GetData": 1})
        # Its term's record after the edge: a first one (the listing showed none), one multi.
        assert edges.at("p0", "term_recorded") - edges.at("p0", "elected") == Counter({"Transaction": 1})
        # Right behind the head: its own node is watched beside the head's (see the failover).
        assert edges.at("p1", "joined") == Counter({"Create2": 1, "GetChildren2": 1, "GetData": 2})
        # Anyone further back: the create, the listing, the watch on its predecessor.
        assert edges.at("p2", "joined") == Counter({"Create2": 1, "GetChildren2": 1, "GetData": 1})


@pytest.mark.timeout(60)
async def test_a_graceful_failover_costs_the_leaving_multi_and_nothing_of_the_successor(
    zk_hosts: str, zk_path: str
) -> None:
    edges = AtEdges()
    rec = Recorder()
    leader = rec.attach(edges.attach(Election(zk_hosts, zk_path, identity="old", session_timeout_s=T)))
    successor = rec.attach(edges.attach(Election(zk_hosts, zk_path, identity="new", session_timeout_s=T)))
    async with running([leader, successor]):
        await eventually(lambda: bool(rec.events("old", "term_recorded")), what="old recorded")
        before_old, before_new = sent(leader), sent(successor)
        await leader.stop()
        await successor.wait_for_leadership(10)
        # The old leader's one multi: its term marked ended and its node deleted.
        assert sent(leader) - before_old == Counter({"Transaction": 1})
        # Promoted by the notification alone: no request between its joining and its election.
        assert edges.at("new", "elected") == before_new
        [gone] = rec.events("new", "predecessor_gone")
        [elected] = rec.events("new", "elected")
        assert (elected.previous_id, elected.previous_token) == ("old", leader_token(rec))
        assert gone.monotonic_s <= elected.monotonic_s
        await eventually(lambda: bool(rec.events("new", "term_recorded")), what="new recorded")
        [recorded] = rec.events("new", "term_recorded")
        assert recorded.previous_id == "old" and recorded.failover_s is not None and recorded.failover_s < 1.0


def leader_token(rec: Recorder) -> int:
    [elected] = rec.events("old", "elected")
    assert elected.token is not None
    return elected.token


@pytest.mark.timeout(240)
async def test_two_thousand_resigns_leave_the_client_s_tables_flat(zk_hosts: str, zk_path: str) -> None:
    client = aiozk.ZKClient(zk_hosts, session_timeout=T)
    await client.start()
    try:
        es = [Election(None, zk_path, identity=f"p{i}", client=client) for i in range(2)]
        async with running(es):

            def tables() -> tuple[int, int, int]:
                session = Session.for_client(client)
                return (
                    len(client.stat_cache),
                    len(client.session.watch_callbacks),
                    len(session._state_waiters),
                )

            async def resign(n: int) -> None:
                for _ in range(n):
                    leader = await _leader_of(es)
                    await leader.resign()

            await resign(200)
            warm = tables()
            await resign(1800)
            await _leader_of(es)
            assert all(e.state in (ElectionState.FOLLOWING, ElectionState.LEADING) for e in es)
            # The leader watches its node and the follower its predecessor and its own: a few
            # entries, and as many after 2,000 resigns as after 200.
            assert tables() == warm, (warm, tables())
            assert warm[0] <= 4 and warm[1] <= 8 and warm[2] <= 8, warm
    finally:
        await client.close()


async def _leader_of(es: list[Election]) -> Election:
    waits = [asyncio.ensure_future(e.wait_for_leadership(10)) for e in es]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    leading = [e for e in es if e.is_leader]
    assert len(leading) == 1, [e.state for e in es]
    return leading[0]
