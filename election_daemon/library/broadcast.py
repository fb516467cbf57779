"""One publisher, many subscribers: the event streams of elections and observers.

Every subscriber has its own bounded queue. :meth:`Broadcast.publish` never blocks and
never waits for a subscriber: the election's state machine must not depend on how fast
anyone reads its events.

**Subscription semantics.** A subscription starts when :meth:`Broadcast.subscribe` is
called (``Election.changes()``, ``Observer.changes()``, ``Observer.snapshots()``), not at
its first iteration: every item published after the call is delivered, in order, even if
the subscriber starts iterating later. A subscription taken after the broadcast closed ends
at once (raising the error it closed with, if any). One nobody references any more is
dropped by itself.

**Overflow rule.** A subscriber that falls more than ``max_backlog`` items behind is cut
off: it first receives every item it had queued (an exact, gap-free prefix of the stream),
then its iteration raises :class:`SubscriberOverflowError`. Nothing is ever dropped
silently, and a stalled subscriber holds at most ``max_backlog`` items. Subscribe again to
resume from the present.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from typing import Generic, Self, TypeVar

from election_daemon.errors import ElectionError

__all__ = ["DEFAULT_MAX_BACKLOG", "Broadcast", "SubscriberOverflowError", "Subscription"]

_T = TypeVar("_T")

DEFAULT_MAX_BACKLOG = 1000
"""How many unread items a subscriber may have before it is cut off."""


class SubscriberOverflowError(ElectionError):
    """A subscriber fell too far behind its broadcast and was cut off (see :mod:`.broadcast`)."""


class Subscription(Generic[_T]):
    """One subscriber's queue: an async iterator over the items published since it was taken."""

    def __init__(self, max_backlog: int) -> None:
        self._items: collections.deque[_T] = collections.deque()
        self._max_backlog = max_backlog
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _T:
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    async def aclose(self) -> None:
        """Stop receiving: what is queued is dropped and iteration ends."""
        self._items.clear()
        self._ended = True
        self._error = None
        self._wake()

    @property
    def backlog(self) -> int:
        """Items published but not read yet."""
        return len(self._items)

    def _push(self, item: _T) -> bool:
        """Queue ``item``; False if this subscriber is (now) cut off."""
        if self._ended:
            return False
        if len(self._items) >= self._max_backlog:
            self._end(
                SubscriberOverflowError(
                    f"the subscriber fell more than {self._max_backlog} items behind and was cut off"
                )
            )
            return False
        self._items.append(item)
        self._wake()
        return True

    def _end(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Broadcast(Generic[_T]):
    """Items published to every current subscriber, each through a queue of its own."""

    def __init__(self, *, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        self.max_backlog = max_backlog
        self._subscribers: weakref.WeakSet[Subscription[_T]] = weakref.WeakSet()
        self._closed = False
        self._error: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, *, first: _T | None = None) -> Subscription[_T]:
        """A new subscription, starting now; ``first`` (if not None) is queued before the rest."""
        subscription: Subscription[_T] = Subscription(self.max_backlog)
        if first is not None:
            subscription._push(first)
        if self._closed:
            subscription._end(self._error)
        else:
            self._subscribers.add(subscription)
        return subscription

    def publish(self, item: _T) -> None:
        """Queue ``item`` for every subscriber; never blocks. A no-op once closed."""
        if self._closed:
            return
        for subscription in list(self._subscribers):
            if not subscription._push(item):
                self._subscribers.discard(subscription)

    def close(self, error: BaseException | None = None) -> None:
        """End every subscription once it has read what it has queued (then raising ``error``).

        Only the first call counts.
        """
        if self._closed:
            return
        self._closed = True
        self._error = error
        for subscription in list(self._subscribers):
            subscription._end(error)
        self._subscribers = weakref.WeakSet()

    def __len__(self) -> int:
        """How many subscriptions are current."""
        return len(self._subscribers)
