"""The broadcast primitive: per-subscriber bounded queues, subscription at the call, the overflow rule."""

from __future__ import annotations

import asyncio
import gc

import pytest

from election_daemon import Election, ElectionError, ElectionState, Observer
from election_daemon.library.broadcast import Broadcast, SubscriberOverflowError


async def collect(it: object, n: int | None = None) -> list[object]:
    out: list[object] = []
    async for item in it:  # type: ignore[attr-defined]
        out.append(item)
        if n is not None and len(out) == n:
            break
    return out


async def test_every_subscriber_gets_every_item_in_order() -> None:
    b: Broadcast[int] = Broadcast()
    s1, s2 = b.subscribe(), b.subscribe()
    for i in range(5):
        b.publish(i)
    b.close()
    assert await collect(s1) == [0, 1, 2, 3, 4]
    assert await collect(s2) == [0, 1, 2, 3, 4]


async def test_the_subscription_starts_at_the_call_not_at_the_first_iteration() -> None:
    b: Broadcast[str] = Broadcast()
    b.publish("before")
    sub = b.subscribe()
    b.publish("after the call")
    b.publish("still before iterating")
    b.close()
    assert await collect(sub) == ["after the call", "still before iterating"]


async def test_a_waiting_subscriber_is_woken_by_publish() -> None:
    b: Broadcast[int] = Broadcast()
    sub = b.subscribe()
    got = asyncio.ensure_future(collect(sub, 2))
    await asyncio.sleep(0)
    b.publish(1)
    await asyncio.sleep(0)
    b.publish(2)
    assert await asyncio.wait_for(got, 1) == [1, 2]


async def test_close_ends_iteration_after_the_queued_items_with_the_error() -> None:
    b: Broadcast[int] = Broadcast()
    sub = b.subscribe()
    b.publish(1)
    b.close(ElectionError("failed"))
    assert await sub.__anext__() == 1
    with pytest.raises(ElectionError, match="failed"):
        await sub.__anext__()
    b.publish(2)  # a no-op once closed
    with pytest.raises(ElectionError, match="failed"):
        await sub.__anext__()


async def test_subscribing_after_close_ends_at_once() -> None:
    b: Broadcast[int] = Broadcast()
    b.close()
    assert await collect(b.subscribe()) == []
    failed: Broadcast[int] = Broadcast()
    failed.close(ElectionError("boom"))
    failed.close()  # only the first close counts
    with pytest.raises(ElectionError, match="boom"):
        await collect(failed.subscribe())


async def test_a_subscriber_too_far_behind_gets_its_backlog_then_an_error() -> None:
    b: Broadcast[int] = Broadcast(max_backlog=3)
    slow, fast = b.subscribe(), b.subscribe()
    got: list[int] = []
    for i in range(6):
        b.publish(i)
        got.append(await fast.__anext__())
    assert got == list(range(6))
    assert len(b) == 1  # the slow one was cut off at the fourth item
    assert [await slow.__anext__() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(SubscriberOverflowError):
        await slow.__anext__()
    b.close()
    assert await collect(fast) == []


async def test_the_backlog_is_bounded_whatever_is_published() -> None:
    b: Broadcast[int] = Broadcast(max_backlog=10)
    sub = b.subscribe()
    for i in range(10_000):
        b.publish(i)
    assert sub.backlog == 10


async def test_first_is_queued_before_what_follows() -> None:
    b: Broadcast[str] = Broadcast()
    sub = b.subscribe(first="now")
    b.publish("next")
    b.close()
    assert await collect(sub) == ["now", "next"]


async def test_aclose_unsubscribes() -> None:
    b: Broadcast[int] = Broadcast()
    sub = b.subscribe()
    b.publish(1)
    await sub.aclose()
    assert await collect(sub) == []
    b.publish(2)
    assert len(b) == 0


async def test_abandoned_subscriptions_are_dropped() -> None:
    b: Broadcast[int] = Broadcast()
    b.subscribe()
    gc.collect()
    assert len(b) == 0


def test_the_backlog_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Broadcast(max_backlog=0)


# -- the same semantics for elections and observers ---------------------------------------


async def test_election_changes_subscribe_at_the_call() -> None:
    election = Election("127.0.0.1:1", "/tests/broadcast")
    changes = election.changes()  # not iterated yet
    await election.stop()
    assert election.state is ElectionState.STOPPED
    assert [t.event for t in await collect(changes)] == ["stopped"]  # type: ignore[attr-defined]
    assert await collect(election.changes()) == []  # after the end: ends at once


async def test_observer_streams_subscribe_at_the_call_and_end_with_stop() -> None:
    observer = Observer("127.0.0.1:1", "/tests/broadcast")
    changes, snapshots = observer.changes(), observer.snapshots()
    assert len(observer._changes) == 1 and len(observer._snapshots) == 1
    await observer.stop()
    assert await collect(changes) == []
    assert await collect(snapshots) == []
    assert await collect(observer.changes()) == []
