"""Helpers for tests that run elections in-process: start and stop them, record their transitions."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Sequence

from election_daemon import Election, Term, Transition

T = 2.0
"""The session timeout these tests use: short, so faults heal quickly."""


class Recorder:
    """Every transition of several elections, in the order the loop saw them."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def attach(self, election: Election) -> Election:
        election.add_listener(self.transitions.append)
        return election

    def events(self, identity: str, event: str) -> list[Transition]:
        return [t for t in self.transitions if t.id == identity and t.event == event]

    def tokens(self) -> list[int]:
        return [t.token for t in self.transitions if t.event == "elected" and t.token is not None]


@contextlib.asynccontextmanager
async def running(elections: Sequence[Election]) -> AsyncIterator[Sequence[Election]]:
    try:
        for e in elections:
            await e.start()
        yield elections
    finally:
        for e in elections:
            with contextlib.suppress(Exception):
                await e.stop()


async def recorded_leadership(election: Election, timeout_s: float = 10.0) -> Term:
    """Wait until ``election`` leads AND its term is recorded, so observers name it leader.

    wait_for_leadership() returns as soon as it leads; the record (.terms) follows a round
    trip later, and until then observers rightly show it as next, not leader.
    """
    deadline = time.monotonic() + timeout_s
    term = await election.wait_for_leadership(timeout_s)
    while True:
        shown = await election.leader()
        if shown is not None and shown.token == term.token:
            return term
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{election.identity}'s term {term.token} is not recorded after {timeout_s:g} s"
            )
        await asyncio.sleep(0.01)


def leaders(elections: Sequence[Election]) -> list[Election]:
    return [e for e in elections if e.is_leader]


def strictly_increasing(tokens: list[int]) -> bool:
    distinct = list(dict.fromkeys(tokens))  # a term resumed after a blip keeps its token
    return all(a < b for a, b in itertools.pairwise(distinct))
