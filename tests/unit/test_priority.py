"""The priority policy over queue snapshots, with a fake clock: no ZooKeeper, no event loop."""

from __future__ import annotations

from collections.abc import Callable

from election_daemon.library.priority import (
    MAX_REMEMBERED,
    MOVES_BURST,
    Deferral,
    PriorityPolicy,
    preferred,
)
from election_daemon.library.recipes import Contender, Recipe

PATH = "/election"
T = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def c(seq: int, priority: int = 0, guid: str | None = None) -> Contender:
    guid = guid or f"{seq:032x}"
    name = f"_c_{guid}_p{priority}-{seq:010d}" if priority else f"_c_{guid}-{seq:010d}"
    return Contender(seq, name, Recipe.NATIVE, guid, priority)


def node(contender: Contender) -> str:
    return f"{PATH}/{contender.name}"


def policy(priority: int = 0, stable_s: float | None = None) -> tuple[PriorityPolicy, Clock]:
    clock = Clock()
    return PriorityPolicy(PATH, priority, stable_s=stable_s, session_timeout_s=T, clock=clock), clock


def mine_is(me: Contender) -> Callable[[Contender], bool]:
    return lambda other: other.guid == me.guid


# -- preferred ----------------------------------------------------------------------------


def test_the_highest_priority_is_preferred_then_queue_order() -> None:
    assert preferred([c(1), c(2, 5), c(3, 5), c(4, 1)]) == c(2, 5)
    assert preferred([c(1), c(2)]) == c(1)
    assert preferred([c(1, -3), c(2)]) == c(2)


# -- before leading -----------------------------------------------------------------------


def test_a_would_be_leader_defers_to_a_higher_priority_and_writes_a_handover() -> None:
    p, _ = policy()
    me, high = c(1), c(2, 5)
    assert p.deferral(node(me), me, [me, high], None) == Deferral(node(high), write_handover=True)


def test_equal_or_lower_priorities_do_not_make_it_defer() -> None:
    p, _ = policy(3)
    me = c(1, 3)
    assert p.deferral(node(me), me, [me, c(2, 3), c(3, 1)], None) is None


def test_a_pending_handover_wins_over_priorities() -> None:
    p, _ = policy()
    me, high, named = c(1), c(2, 9), c(3)
    assert p.deferral(node(me), me, [me, high, named], node(named)) == Deferral(node(named), False)


def test_a_handover_to_us_or_to_an_absent_node_is_ignored() -> None:
    p, _ = policy()
    me, other = c(1), c(2)
    assert p.deferral(node(me), me, [me, other], node(me)) is None
    assert p.deferral(node(me), me, [me, other], f"{PATH}/_c_{'f' * 32}-0000000099") is None


def test_a_target_is_deferred_to_once_only() -> None:
    p, _ = policy()
    me, high = c(1), c(2, 5)
    deferral = p.deferral(node(me), me, [me, high], None)
    assert deferral is not None
    assert p.may_step_aside_for(deferral.target)
    assert p.deferral(node(me), me, [me, high], None) is None
    assert not p.may_step_aside_for(deferral.target)


def test_a_target_that_left_may_be_deferred_to_again_if_it_comes_back() -> None:
    # Node names are unique forever: forgetting an absent one is safe.
    p, _ = policy()
    me, high = c(1), c(2, 5)
    assert p.may_step_aside_for(node(high))
    assert p.deferral(node(me), me, [me], None) is None
    assert p.deferral(node(me), me, [me, high], None) == Deferral(node(high), True)


def test_a_declined_target_is_never_deferred_to() -> None:
    p, _ = policy()
    me, high = c(1), c(2, 5)
    p.decline(node(high))
    assert p.deferral(node(me), me, [me, high], None) is None


# -- the move budget ----------------------------------------------------------------------


def test_moves_come_in_a_burst_then_one_per_half_timeout() -> None:
    p, clock = policy()
    targets = [f"{PATH}/_c_{i:032x}-{i:010d}" for i in range(MOVES_BURST + 2)]
    assert [p.may_step_aside_for(t) for t in targets[:MOVES_BURST]] == [True] * MOVES_BURST
    assert not p.may_step_aside_for(targets[MOVES_BURST])
    assert not p.may_step_down()
    clock.now += T / 2
    assert p.may_step_down()
    assert not p.may_step_aside_for(targets[MOVES_BURST + 1])


def test_pacing_reserves_moves_in_advance() -> None:
    p, _ = policy()
    assert [p.pace_s() for _ in range(MOVES_BURST)] == [0.0] * MOVES_BURST
    assert p.pace_s() == T / 2
    assert p.pace_s() == T


def test_the_memory_of_deferrals_is_bounded() -> None:
    p, clock = policy()
    for i in range(MAX_REMEMBERED + 10):
        clock.now += T  # keep the budget full
        p.decline(f"{PATH}/n_{i:010d}")
    assert len(p._deferred_to) <= MAX_REMEMBERED


# -- while leading: the anti-flapping wait -------------------------------------------------


def test_a_leader_hands_over_only_after_the_stable_wait() -> None:
    p, clock = policy(stable_s=5.0)
    me, high = c(1), c(2, 5)
    queue = [me, high]
    assert p.successor(queue, is_mine=mine_is(me), session_timeout_s=T) == (None, 5.0)
    clock.now += 3.0
    assert p.successor(queue, is_mine=mine_is(me), session_timeout_s=T) == (None, 2.0)
    clock.now += 2.0
    assert p.successor(queue, is_mine=mine_is(me), session_timeout_s=T) == (node(high), None)


def test_the_default_stable_wait_is_twice_the_negotiated_timeout() -> None:
    p, clock = policy()
    me, high = c(1), c(2, 5)
    assert p.successor([me, high], is_mine=mine_is(me), session_timeout_s=4.0) == (None, 8.0)
    clock.now += 8.0
    assert p.successor([me, high], is_mine=mine_is(me), session_timeout_s=4.0) == (node(high), None)


def test_a_contender_that_comes_and_goes_starts_its_wait_again() -> None:
    p, clock = policy(stable_s=5.0)
    me, high = c(1), c(2, 5)
    p.successor([me, high], is_mine=mine_is(me), session_timeout_s=T)
    clock.now += 4.0
    assert p.successor([me], is_mine=mine_is(me), session_timeout_s=T) == (None, None)
    clock.now += 4.0
    assert p.successor([me, high], is_mine=mine_is(me), session_timeout_s=T) == (None, 5.0)


def test_nobody_better_means_no_handover() -> None:
    p, _ = policy(3)
    me = c(1, 3)
    queue = [me, c(2, 3), c(3, 1)]
    assert p.successor(queue, is_mine=mine_is(me), session_timeout_s=T) == (None, None)


def test_our_own_orphan_is_never_a_successor() -> None:
    p, _ = policy(stable_s=0.0)
    me = c(1)
    orphan = c(5, 7, guid=me.guid)
    assert p.successor([me, orphan], is_mine=mine_is(me), session_timeout_s=T) == (None, None)


def test_the_best_of_several_is_chosen_and_each_keeps_its_own_wait() -> None:
    p, clock = policy(stable_s=5.0)
    me, mid, top = c(1), c(2, 3), c(3, 7)
    p.successor([me, mid], is_mine=mine_is(me), session_timeout_s=T)
    clock.now += 4.0
    # The best one waits from when it appeared, whoever else waited longer.
    assert p.successor([me, mid, top], is_mine=mine_is(me), session_timeout_s=T) == (None, 5.0)
    clock.now += 5.0
    assert p.successor([me, mid, top], is_mine=mine_is(me), session_timeout_s=T) == (node(top), None)


def test_a_declined_successor_makes_way_for_the_next_best() -> None:
    p, _ = policy(stable_s=0.0)
    me, mid, top = c(1), c(2, 3), c(3, 7)
    assert p.successor([me, mid, top], is_mine=mine_is(me), session_timeout_s=T) == (node(top), None)
    p.decline(node(top))
    assert p.successor([me, mid, top], is_mine=mine_is(me), session_timeout_s=T) == (node(mid), None)


def test_leaving_the_lead_restarts_every_wait() -> None:
    p, clock = policy(stable_s=5.0)
    me, high = c(1), c(2, 5)
    p.successor([me, high], is_mine=mine_is(me), session_timeout_s=T)
    clock.now += 4.0
    p.left_the_lead()
    assert p.successor([me, high], is_mine=mine_is(me), session_timeout_s=T) == (None, 5.0)
