"""Who may do what to an election path and its nodes: the ACL model.

Without :class:`ElectionACL` everything is created open (``world:anyone``, all rights), as
before. With one:

- the **election path** (created by us; its ancestors are created open): every right for its
  creator (ZooKeeper's ``auth`` scheme: the session's own ids) and for each *participant*
  (they are trusted peers: CREATE to join, DELETE to leave -- ZooKeeper checks a delete
  against the parent, so a participant can delete any node under the path, not only its
  own --, WRITE to publish a priority handover); READ and WRITE for *operators* (a handover
  named by ``step-down --to``); READ for *readers*. Nobody else may join, delete or write.
- **each participant's node**: every right for its creator only (``auth``); READ for the
  other participants (they watch their predecessor), READ and WRITE for operators (a
  step-down request is written into the leader's node), READ for readers.

IDs are ZooKeeper's ``scheme:id``: ``digest:user:<base64 sha1>`` (see
:meth:`DigestAuth.acl_id`), ``x509:<RFC 2253 subject>``, ``ip:<address[/bits]>``,
``sasl:<principal>``; ``world:anyone`` only for readers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from election_daemon.errors import ConfigError

__all__ = [
    "ALL",
    "CREATE",
    "DELETE",
    "READ",
    "WRITE",
    "AclEntry",
    "ElectionACL",
    "Identities",
    "can_delete_children",
    "check_acl",
    "describe",
    "merged",
    "node_acl",
    "open_rights",
    "path_acl",
    "perms_text",
]

READ, WRITE, CREATE, DELETE, ADMIN = 1, 2, 4, 8, 16
ALL = READ | WRITE | CREATE | DELETE | ADMIN
_LETTERS = (("c", CREATE), ("d", DELETE), ("r", READ), ("w", WRITE), ("a", ADMIN))
_SCHEMES = ("digest", "x509", "ip", "sasl", "world")
_WORLD = "world:anyone"
_MAX_IDS = 64
_MAX_ID_CHARS = 1024


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One ZooKeeper ACL entry: ``perms`` (a mask of READ, WRITE, ...) for ``scheme:id``."""

    scheme: str
    id: str
    perms: int

    @property
    def who(self) -> str:
        return f"{self.scheme}:{self.id}"

    def __str__(self) -> str:
        return f"{self.who}:{perms_text(self.perms)}"


@dataclass(frozen=True, slots=True)
class ElectionACL:
    """The identities an election path is shared with; see the module's documentation.

    :param participants: ids that may join the election (full rights on the path).
    :param operators: ids that may ask for a step-down or a handover (write, not join).
    :param readers: ids that may only read (``world:anyone`` for an open read).
    """

    participants: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Identities:
    """The ids our session holds, as far as we know them (for the start-time ACL check)."""

    ids: tuple[str, ...]
    """Ids we certainly hold: ``digest:user:<hash>`` of our credentials."""
    unknown_schemes: tuple[str, ...]
    """Schemes in which we may hold ids we cannot name (``x509`` with TLS, ``ip``, ``sasl``)."""


def check_acl(acl: ElectionACL | None, field: str = "acl") -> ElectionACL | None:
    """``acl`` with each id checked (``scheme:id``, known scheme, no ``world`` but for readers)."""
    if acl is None:
        return None
    if not isinstance(acl, ElectionACL):
        raise ConfigError(field, f"must be an ElectionACL, not {type(acl).__name__}")
    names = _Names.of(field)
    return ElectionACL(
        participants=_check_ids(names.participants, acl.participants, world=False),
        operators=_check_ids(names.operators, acl.operators, world=False),
        readers=_check_ids(names.readers, acl.readers, world=True),
    )


@dataclass(frozen=True, slots=True)
class _Names:
    participants: str
    operators: str
    readers: str

    @classmethod
    def of(cls, field: str) -> _Names:
        if field.startswith("--"):
            return cls("--acl-participant", "--acl-operator", "--acl-reader")
        return cls("acl.participants", "acl.operators", "acl.readers")


def _check_ids(field: str, ids: object, *, world: bool) -> tuple[str, ...]:
    if isinstance(ids, str) or not isinstance(ids, Iterable):
        raise ConfigError(field, "must be a list of ids like 'digest:alice:<hash>'")
    checked: list[str] = []
    for raw in ids:
        if not isinstance(raw, str):
            raise ConfigError(field, f"an id must be a string, not {type(raw).__name__}")
        text = raw.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or not rest or len(text) > _MAX_ID_CHARS or any(c in text for c in "\r\n\0"):
            raise ConfigError(field, f"{text[:80]!r} is not an id 'scheme:id' (e.g. digest:alice:<hash>)")
        if scheme not in _SCHEMES:
            raise ConfigError(
                field, f"unknown scheme {scheme!r} in {text[:80]!r}: one of {', '.join(_SCHEMES)}"
            )
        if scheme == "world":
            if text != _WORLD:
                raise ConfigError(field, f"the world scheme has one id, world:anyone, not {text[:80]!r}")
            if not world:
                raise ConfigError(
                    field, "world:anyone may only be a reader: it would open the election to anyone"
                )
        if scheme == "digest" and rest.count(":") != 1:
            raise ConfigError(field, f"a digest id is digest:user:<base64 sha1>, not {text[:80]!r}")
        if text not in checked:
            checked.append(text)
    if len(checked) > _MAX_IDS:
        raise ConfigError(field, f"at most {_MAX_IDS} ids")
    return tuple(checked)


def _entry(who: str, perms: int) -> AclEntry:
    scheme, _, ident = who.partition(":")
    return AclEntry(scheme, ident, perms)


def merged(entries: Sequence[AclEntry]) -> tuple[AclEntry, ...]:
    """One entry per id, its rights the union of the given ones (ZooKeeper keeps duplicates)."""
    perms: dict[tuple[str, str], int] = {}
    for e in entries:
        perms[e.scheme, e.id] = perms.get((e.scheme, e.id), 0) | e.perms
    return tuple(AclEntry(s, i, p) for (s, i), p in perms.items())


def path_acl(acl: ElectionACL, ours: Sequence[str] = ()) -> tuple[AclEntry, ...]:
    """The election path's ACL: everything for its creator and the participants.

    ``ours``: the creator's ids, which the ``auth`` entry covers (ZooKeeper would keep both).
    """
    return merged(
        [
            AclEntry("auth", "", ALL),
            *(_entry(p, ALL) for p in acl.participants if p not in ours),
            *(_entry(o, READ | WRITE) for o in acl.operators if o not in ours),
            *(_entry(r, READ) for r in acl.readers if r not in ours),
        ]
    )


def node_acl(acl: ElectionACL, ours: Sequence[str] = ()) -> tuple[AclEntry, ...]:
    """A participant's node's ACL: everything for its creator only (see :func:`path_acl`)."""
    return merged(
        [
            AclEntry("auth", "", ALL),
            *(_entry(p, READ) for p in acl.participants if p not in ours),
            *(_entry(o, READ | WRITE) for o in acl.operators if o not in ours),
            *(_entry(r, READ) for r in acl.readers if r not in ours),
        ]
    )


def perms_text(perms: int) -> str:
    """``cdrwa`` as zkCli shows it, a letter per right held."""
    return "".join(letter for letter, bit in _LETTERS if perms & bit)


def open_rights(entries: Sequence[AclEntry]) -> int:
    """The rights ``world:anyone`` has beyond READ (0 when the ACL is closed to strangers)."""
    return sum(e.perms for e in entries if e.who == _WORLD) & (WRITE | CREATE | DELETE | ADMIN)


def describe(entries: Sequence[AclEntry]) -> str:
    """``digest:alice:…:cdrwa, world:anyone:r``, one entry per id."""
    return ", ".join(str(e) for e in merged(entries)) or "(none)"


def can_delete_children(
    entries: Sequence[AclEntry], our_ids: Sequence[str], unknown_schemes: Sequence[str] = ()
) -> bool:
    """Whether ``entries`` (a path's ACL) may let us delete a child, as far as we can know.

    ``our_ids`` are the ids we certainly hold (``digest:…`` from our credentials);
    ``unknown_schemes`` are schemes for which we may hold ids we cannot name (``x509`` with
    a client certificate, ``ip``, ``sasl``): an entry of those schemes granting DELETE is given
    the benefit of the doubt, as is a digest id of our user that ZooKeeper masked
    (``digest:alice:x``, shown to sessions without ADMIN). False only when no entry can
    possibly be ours.
    """
    # ZooKeeper shows a digest id as "user:x" to a session without ADMIN on the node: the user
    # may be ours, whatever the hash.
    our_users = {i.split(":")[1] for i in our_ids if i.startswith("digest:")}
    for e in entries:
        if not e.perms & DELETE:
            continue
        if e.who == _WORLD or e.who in our_ids or e.scheme in unknown_schemes:
            return True
        user, _, hashed = e.id.partition(":")
        if e.scheme == "digest" and hashed == "x" and user in our_users:
            return True
    return False
