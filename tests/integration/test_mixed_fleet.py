"""Mixed fleets: our election beside kazoo's ``Election`` and Curator's ``LeaderLatch`` on one path.

The foreign contenders are the real libraries, in their own processes (``_foreign.py``), so a
leader can be SIGKILLed. Throughout every test a :class:`Fleet` checks that no two contenders
lead at once: at every leadership edge of either side, and by sampling both sides every
couple of milliseconds. At each checkpoint exactly one leads, and it is the one that joined
first (the lowest sequence number), whichever recipe made its node.

Our ``native`` recipe queues behind every contender, but kazoo and Curator do not see native
nodes, so a native participant is only tested joining *after* the foreign ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable

import pytest
from _elections import T
from _foreign import (
    REQUIRE_CURATOR_ENV,
    CuratorRuntime,
    CuratorUnavailableError,
    ForeignParticipant,
    Line,
    compile_latch_participant,
    curator_participant,
    kazoo_participant,
)

from election_daemon import Election, ElectionState, Transition

FOREIGN = ["kazoo", "curator"]
OUR_NODE_NAMES = {
    "kazoo": re.compile(r"^[0-9a-f]{32}__lock__\d{10}$"),
    "curator": re.compile(r"^_c_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-latch-\d{10}$"),
}
CRASH_FAILOVER_S = 5 * T
"""A SIGKILLed leader's session expires T after its last ping; then the next one takes over."""
STEADY_S = 0.5
"""How long a checkpoint watches the leader stay put after someone joined behind it."""
_SAMPLE_S = 0.002


@pytest.fixture(scope="session")
def curator_runtime(tmp_path_factory: pytest.TempPathFactory) -> CuratorRuntime:
    """The Curator participant, compiled once per session; skipped only if Java or Curator is missing."""
    try:
        return compile_latch_participant(tmp_path_factory.mktemp("curator"))
    except CuratorUnavailableError as error:
        if os.environ.get(REQUIRE_CURATOR_ENV):
            pytest.fail(f"{REQUIRE_CURATOR_ENV} is set but {error}", pytrace=False)
        pytest.skip(f"Curator tests need Java and Curator: {error}")


class Fleet:
    """Our elections and foreign participants on one path, watched for two leaders at once."""

    def __init__(self, hosts: str, path: str, runtime: Callable[[], CuratorRuntime]) -> None:
        self.hosts = hosts
        self.path = path
        self._runtime = runtime
        self.ours: list[Election] = []
        self.theirs: list[ForeignParticipant] = []
        self.violations: list[str] = []
        self.samples = 0
        self._started = time.monotonic()
        self._sampler: asyncio.Task[None] | None = None

    # -- who leads ---------------------------------------------------------------------------

    def leaders(self) -> list[str]:
        return [e.identity for e in self.ours if e.is_leader] + [
            f.identity for f in self.theirs if f.is_leading
        ]

    def _check(self, where: str) -> None:
        leading = self.leaders()
        if len(leading) > 1:
            at = time.monotonic() - self._started
            self.violations.append(f"{at:.3f} s ({where}): {leading} all leading")

    def _on_transition(self, transition: Transition) -> None:
        if transition.event == "elected":
            self._check(f"{transition.id} elected")

    def _on_line(self, participant: ForeignParticipant, line: Line) -> None:
        if line.kind == "LEADER":
            self._check(f"{participant.identity} printed LEADER")

    async def _sample(self) -> None:
        while True:
            self._check("sample")
            self.samples += 1
            await asyncio.sleep(_SAMPLE_S)

    def assert_never_two_leaders(self) -> None:
        assert not self.violations, "two leaders at once:\n" + "\n".join(self.violations[:20])

    async def sole_leader(self, identity: str, timeout_s: float = 10.0) -> None:
        """Wait until exactly ``identity`` leads, then watch it stay the only leader a moment."""
        deadline = time.monotonic() + timeout_s
        while self.leaders() != [identity]:
            assert time.monotonic() < deadline, (
                f"after {timeout_s:g} s the leaders are {self.leaders()}, not just {identity}; "
                f"foreign: {self.theirs}"
            )
            await asyncio.sleep(_SAMPLE_S)
        deadline = time.monotonic() + STEADY_S
        while time.monotonic() < deadline:
            assert self.leaders() == [identity], f"{identity} was sole leader, now {self.leaders()}"
            await asyncio.sleep(_SAMPLE_S)
        self.assert_never_two_leaders()

    # -- contenders --------------------------------------------------------------------------

    async def start_ours(self, identity: str, recipe: str = "native") -> Election:
        election = Election(self.hosts, self.path, identity=identity, recipe=recipe, session_timeout_s=T)
        election.add_listener(self._on_transition)
        self.ours.append(election)
        await election.start()
        return election

    async def start_theirs(self, recipe: str, identity: str) -> ForeignParticipant:
        if recipe == "kazoo":
            participant = kazoo_participant(self.hosts, self.path, identity, T)
        else:
            participant = curator_participant(self._runtime(), self.hosts, self.path, identity, T)
        participant.listeners.append(self._on_line)
        self.theirs.append(participant)
        return await participant.start()

    async def queue(self, election: Election) -> list[tuple[str, str | None, bool]]:
        """The queue as ``election`` reads it: (recipe, id, is_leader), first first."""
        return [(p.recipe.value, p.id, p.is_leader) for p in await election.participants()]

    # -- lifetime ----------------------------------------------------------------------------

    def start_watching(self) -> None:
        self._sampler = asyncio.create_task(self._sample())

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        for election in self.ours:
            with contextlib.suppress(Exception):
                await election.stop()
        for participant in self.theirs:
            await participant.discard()


@pytest.fixture
async def fleet(zk_hosts: str, zk_path: str, request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    def runtime() -> CuratorRuntime:
        value: CuratorRuntime = request.getfixturevalue("curator_runtime")
        return value

    fleet = Fleet(zk_hosts, zk_path, runtime)
    fleet.start_watching()
    try:
        yield fleet
    finally:
        await fleet.close()
    fleet.assert_never_two_leaders()
    assert fleet.samples > 100, f"only {fleet.samples} samples: the watch did not run"


@pytest.fixture(params=FOREIGN)
def recipe(request: pytest.FixtureRequest) -> str:
    """kazoo or Curator; the Curator cases compile the Java participant first (or skip)."""
    if request.param == "curator":
        request.getfixturevalue("curator_runtime")
    value: str = request.param
    return value


def node_name(node: str | None) -> str:
    assert node is not None
    return node.rsplit("/", 1)[-1]


async def following(election: Election, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while election.state is not ElectionState.FOLLOWING:
        assert time.monotonic() < deadline, f"{election.identity} is {election.state}, not following"
        await asyncio.sleep(_SAMPLE_S)


# -- the harness itself ----------------------------------------------------------------------


async def test_foreign_participants_elect_among_themselves(fleet: Fleet, recipe: str) -> None:
    first = await fleet.start_theirs(recipe, "theirs-1")
    await first.wait_leading()
    second = await fleet.start_theirs(recipe, "theirs-2")
    assert node_name(first.node)[-10:] < node_name(second.node)[-10:]  # the sequence numbers
    await fleet.sole_leader("theirs-1")
    await first.close()
    await second.wait_leading()
    await fleet.sole_leader("theirs-2")
    await second.close()
    assert fleet.leaders() == []


# -- one foreign recipe, our same recipe, both start orders ----------------------------------


async def test_theirs_first_then_ours_same_recipe(fleet: Fleet, recipe: str) -> None:
    theirs = await fleet.start_theirs(recipe, "theirs-1")
    await theirs.wait_leading()
    ours = await fleet.start_ours("ours", recipe)
    assert OUR_NODE_NAMES[recipe].match(node_name(ours.node)), ours.node
    await following(ours)
    await fleet.sole_leader("theirs-1")
    assert await fleet.queue(ours) == [(recipe, "theirs-1", True), (recipe, "ours", False)]
    [first, _] = await ours.participants()
    assert node_name(first.node) == theirs.name

    # Theirs to ours: the foreign leader crashes; we take over once ZooKeeper expires it.
    await theirs.kill()
    await ours.wait_for_leadership(CRASH_FAILOVER_S)
    await fleet.sole_leader("ours")

    # Ours to theirs: a new foreign contender queues behind us; we leave, it takes over.
    successor = await fleet.start_theirs(recipe, "theirs-2")
    await fleet.sole_leader("ours")
    assert await fleet.queue(ours) == [(recipe, "ours", True), (recipe, "theirs-2", False)]
    await ours.stop()
    await successor.wait_leading()
    await fleet.sole_leader("theirs-2")
    await successor.close()


async def test_ours_first_then_theirs_same_recipe(fleet: Fleet, recipe: str) -> None:
    ours = await fleet.start_ours("ours-1", recipe)
    await ours.wait_for_leadership(10)
    theirs = await fleet.start_theirs(recipe, "theirs")
    await fleet.sole_leader("ours-1")
    assert await fleet.queue(ours) == [(recipe, "ours-1", True), (recipe, "theirs", False)]

    # Ours to theirs: we leave gracefully.
    await ours.stop()
    await theirs.wait_leading()
    await fleet.sole_leader("theirs")

    # Theirs to ours: we rejoin behind it; it leaves gracefully.
    rejoined = await fleet.start_ours("ours-2", recipe)
    await following(rejoined)
    await fleet.sole_leader("theirs")
    assert await fleet.queue(rejoined) == [(recipe, "theirs", True), (recipe, "ours-2", False)]
    await theirs.close()
    await rejoined.wait_for_leadership(10)
    await fleet.sole_leader("ours-2")


# -- our native recipe behind foreign contenders ---------------------------------------------


async def test_native_waits_behind_foreign_leaders(fleet: Fleet, recipe: str) -> None:
    first = await fleet.start_theirs(recipe, "theirs-1")
    await first.wait_leading()
    second = await fleet.start_theirs(recipe, "theirs-2")
    ours = await fleet.start_ours("ours")
    await following(ours)
    await fleet.sole_leader("theirs-1")
    assert await fleet.queue(ours) == [
        (recipe, "theirs-1", True),
        (recipe, "theirs-2", False),
        ("native", "ours", False),
    ]

    # The foreign leader leaves: the next foreign one leads, we still wait.
    await first.close()
    await second.wait_leading()
    await fleet.sole_leader("theirs-2")
    assert ours.state is ElectionState.FOLLOWING

    # The last foreign one crashes: we take over once ZooKeeper expires it.
    await second.kill()
    await ours.wait_for_leadership(CRASH_FAILOVER_S)
    await fleet.sole_leader("ours")
    assert await fleet.queue(ours) == [("native", "ours", True)]


# -- three at once: a foreign contender, ours in its recipe, ours native ----------------------


async def test_three_recipes_one_leader(fleet: Fleet, recipe: str) -> None:
    theirs = await fleet.start_theirs(recipe, "theirs")
    await theirs.wait_leading()
    compatible = await fleet.start_ours(f"ours-{recipe}", recipe)
    native = await fleet.start_ours("ours-native")
    await following(compatible)
    await following(native)
    await fleet.sole_leader("theirs")
    assert await fleet.queue(native) == [
        (recipe, "theirs", True),
        (recipe, f"ours-{recipe}", False),
        ("native", "ours-native", False),
    ]

    await theirs.kill()
    await compatible.wait_for_leadership(CRASH_FAILOVER_S)
    await fleet.sole_leader(f"ours-{recipe}")
    assert native.state is ElectionState.FOLLOWING

    await compatible.stop()
    await native.wait_for_leadership(10)
    await fleet.sole_leader("ours-native")
