"""The callback contract of an election, in one place (see :mod:`.election`).

Callbacks may be plain functions or coroutine functions; coroutines run as tasks, so a slow
callback never delays the edge that called it. An exception in a callback or a listener is
logged and affects nothing else. ``on_revoked`` tasks are kept apart so that resigning and
stopping can wait for them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

__all__ = ["Callbacks"]

_A = TypeVar("_A")


class Callbacks:
    """Runs callbacks and listeners by the contract, and keeps the tasks they start."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Future[Any]] = set()
        self._revoke_tasks: set[asyncio.Future[Any]] = set()

    def notify(self, listeners: Iterable[Callable[[_A], None]], item: _A) -> None:
        """Call every listener synchronously; one that raises is logged and skipped."""
        for listener in list(listeners):
            try:
                listener(item)
            except Exception:
                self._log.exception("election listener failed")

    def run(
        self, callbacks: Iterable[Callable[[_A], Awaitable[None] | None]], arg: _A, *, revoking: bool = False
    ) -> None:
        """Call every callback with ``arg``; coroutines become tasks (``revoking``: waited by
        :meth:`revoked_done`)."""
        tasks = self._revoke_tasks if revoking else self._tasks
        for callback in list(callbacks):
            try:
                result = callback(arg)
            except Exception:
                self._log.exception("election callback %r failed", callback)
                continue
            if inspect.isawaitable(result):
                self._keep(asyncio.ensure_future(result), tasks)

    def spawn(self, work: Awaitable[Any]) -> None:
        """Run ``work`` in the background, referenced until it ends."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def revoked_done(self) -> None:
        """Until every ``on_revoked`` coroutine started so far has finished."""
        if self._revoke_tasks:
            await asyncio.wait(list(self._revoke_tasks))

    def _keep(self, task: asyncio.Future[Any], tasks: set[asyncio.Future[Any]]) -> None:
        tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, tasks))

    def _done(self, task: asyncio.Future[Any], tasks: set[asyncio.Future[Any]]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("election callback failed", exc_info=task.exception())
