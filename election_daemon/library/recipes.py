"""Node names of the election recipes that may share a path: ours, Curator's, kazoo's, others'.

Every recipe in the wild puts ephemeral sequential nodes under the election path and lets
the lowest sequence lead, but each one recognises only its own names: a kazoo ``Election``
ignores Curator's nodes, Curator sorts foreign names after its own, and so two recipes on
one path each elect a leader. We queue behind *any* ephemeral child whose name ends in a
ZooKeeper sequence number, whatever its prefix, and we can name our own nodes as Curator's
``LeaderLatch`` or kazoo's ``Election`` does (:class:`Recipe`) so that they queue behind us
too. A name is only a claim: the caller checks the stat (ephemeral, and a czxid that agrees
with the sequence) before trusting it.

ZooKeeper appends the parent's 32-bit child counter formatted as ``%010d``: ten digits, or
after an overflow a minus sign and nine or ten digits (``-000000001``, ``-2147483648``).
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from election_daemon.errors import ConfigError
from election_daemon.library.limits import show

__all__ = [
    "Contender",
    "Recipe",
    "new_guid",
    "node_prefix",
    "our_recipe",
    "parse_contender",
    "parse_contenders",
]

_INT32_MAX = 2**31 - 1


class Recipe(enum.StrEnum):
    """How a contender names its node and what it stores in it."""

    NATIVE = "native"
    """election_daemon's own: ``_c_<guid>[_p<priority>]-<seq>``, JSON with identity and data."""
    CURATOR = "curator"
    """Curator's ``LeaderLatch``/``LeaderSelector``: ``_c_<uuid>-latch-<seq>``, the id as data."""
    KAZOO = "kazoo"
    """kazoo's ``Election``/``Lock``: ``<hex>__lock__<seq>``, the identifier as data."""
    OTHER = "other"
    """Any other name ending in a sequence number (ZooKeeper's recipe ``n_<seq>``, scripts)."""


def our_recipe(value: object, field: str = "recipe") -> Recipe:
    """The recipe ``value`` names, if we may name our own nodes by it (not ``other``)."""
    if isinstance(value, str) and value in _OURS:
        return Recipe(value)
    raise ConfigError(field, f"must be one of 'native', 'curator', 'kazoo', got {show(value)}")


_OURS = frozenset({Recipe.NATIVE.value, Recipe.CURATOR.value, Recipe.KAZOO.value})
_SEQ = r"(?P<seq>\d{10}|-\d{9,10})"
_NAMES: tuple[tuple[Recipe, re.Pattern[str]], ...] = (
    (Recipe.NATIVE, re.compile(rf"_c_(?P<guid>[0-9a-f]{{32}})(?:_p(?P<prio>-?\d{{1,10}}))?-{_SEQ}")),
    (
        Recipe.CURATOR,
        re.compile(
            rf"_c_(?P<guid>[0-9a-f]{{8}}(?:-[0-9a-f]{{4}}){{3}}-[0-9a-f]{{12}})-(?:latch-|lock-){_SEQ}"
        ),
    ),
    (Recipe.KAZOO, re.compile(rf"(?P<guid>[0-9a-f]{{32}})__(?:lock|rlock|wlock|lease|sem)__{_SEQ}")),
)
# Greedy prefix: "x-0000000007" is x- and 7, not x and -7.
_ANY = re.compile(r"(?P<prefix>.*)(?P<seq>\d{10}|-\d{9,10})", re.DOTALL)


@dataclass(frozen=True, slots=True, order=True)
class Contender:
    """A child of the election path that claims, by its name, a place in the queue.

    Contenders order by ``rank``: the sequence as ZooKeeper's unsigned 32-bit counter, so
    that after an overflow (``-2147483648``) a new node queues after ``2147483647``, where
    it was created, not before every node of the queue.
    """

    rank: int = field(init=False, repr=False)
    sequence: int
    name: str
    recipe: Recipe
    guid: str | None = None
    """The candidacy's unique part of the name (None for names of unknown recipes)."""
    priority: int = 0
    """Only our own nodes carry a priority."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank", self.sequence & 0xFFFFFFFF)


# Bounded: every election on a path lists the same names, again at each change of the queue.
@functools.lru_cache(maxsize=8192)
def parse_contender(name: str) -> Contender | None:
    """The contender ``name`` claims to be, or None when it ends in no sequence number."""
    for recipe, pattern in _NAMES:
        m = pattern.fullmatch(name)
        if m is not None and _plausible(int(m["seq"])):
            prio = int(m["prio"]) if recipe is Recipe.NATIVE and m["prio"] else 0
            if -(2**31) <= prio <= _INT32_MAX:
                return Contender(int(m["seq"]), name, recipe, m["guid"], prio)
    m = _ANY.fullmatch(name)
    if m is None:
        return None
    seq = int(m["seq"])
    if seq > _INT32_MAX and m["prefix"].endswith("-"):
        seq = -seq  # "x--2147483648": the counter overflowed, the last dash is the sign
    return Contender(seq, name, Recipe.OTHER) if _plausible(seq) else None


def _plausible(seq: int) -> bool:
    return -(2**31) <= seq <= _INT32_MAX


def parse_contenders(children: Iterable[str]) -> list[Contender]:
    """The contenders among ``children`` in queue order (lowest sequence first), by name alone."""
    found = [c for c in map(parse_contender, children) if c is not None]
    found.sort()
    return found


def new_guid(recipe: Recipe) -> str:
    """A fresh unique part for one candidacy's node name, in ``recipe``'s own format."""
    return str(uuid.uuid4()) if recipe is Recipe.CURATOR else uuid.uuid4().hex


def node_prefix(recipe: Recipe, guid: str, priority: int = 0) -> str:
    """The name (before ZooKeeper's sequence) of our node, as ``recipe`` would name it."""
    if recipe is Recipe.CURATOR:
        return f"_c_{guid}-latch-"
    if recipe is Recipe.KAZOO:
        return f"{guid}__lock__"
    return f"_c_{guid}_p{priority}-" if priority else f"_c_{guid}-"
