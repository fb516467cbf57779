"""Fencing tokens for what a leader writes to: a SQLite fence, and the token from the daemon's environment.

Leadership can end without the leader knowing (a pause, a partition), so the resource itself
must refuse a deposed leader's writes. Each term's token (``ELECTION_TOKEN``, the czxid of the
winning node) is larger than every earlier term's; the resource keeps the highest token it has
accepted and refuses anything lower, in the same transaction as the write it guards::

    fence = SQLiteFence("app.db")
    with fence.fenced(token_from_environment(), writer_id="node-a", op_id="invoice-17") as db:
        db.execute("UPDATE invoices SET state = 'sent' WHERE id = 17")

``docs/fencing.md`` shows the same pattern for PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from election_daemon.errors import ConfigError, NotLeaderError

__all__ = [
    "ACCEPTED",
    "STALE_TOKEN",
    "TOKEN_TAKEN",
    "FenceRequest",
    "FencedWrite",
    "SQLiteFence",
    "StaleTokenError",
    "token_from_environment",
]

TOKEN_VARIABLE = "ELECTION_TOKEN"

ACCEPTED = "accepted"
"""Reason of an accepted request."""
STALE_TOKEN = "stale_token"
"""Rejected: the token is below the highest accepted one (a deposed leader)."""
TOKEN_TAKEN = "token_taken"
"""Rejected: the token equals the highest accepted one, which another writer used first."""

# czxids are positive 64-bit zxids; SQLite integers are signed 64-bit.
_MAX_TOKEN = 2**63 - 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS fence_high_water (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        token INTEGER NOT NULL,
        writer_id TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS fence_requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        token INTEGER NOT NULL,
        writer_id TEXT NOT NULL,
        op_id TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
        reason TEXT NOT NULL,
        received_monotonic_s REAL NOT NULL,
        received_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS fence_writes (
        seq INTEGER PRIMARY KEY REFERENCES fence_requests (seq),
        token INTEGER NOT NULL,
        writer_id TEXT NOT NULL,
        op_id TEXT NOT NULL,
        payload BLOB NOT NULL
    )""",
)


class StaleTokenError(NotLeaderError):
    """The fence refused a write: its token is stale, or another writer holds it."""

    def __init__(self, token: int, writer_id: str, highest: tuple[int, str] | None, reason: str) -> None:
        held = f"token {highest[0]} of {highest[1]}" if highest is not None else "nothing"
        why = "is below" if reason == STALE_TOKEN else "was first used by another writer than"
        super().__init__(f"token {token} of {writer_id} {why} the fence's high-water mark ({held})")
        self.token = token
        self.writer_id = writer_id
        self.highest = highest
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FenceRequest:
    """One request the fence decided, accepted or not, in decision order (``seq``)."""

    seq: int
    token: int
    writer_id: str
    op_id: str
    accepted: bool
    reason: str
    received_monotonic_s: float
    """``time.monotonic()`` when the request arrived: comparable across processes of one host and boot."""
    received_at: float
    """``time.time()`` when the request arrived."""


@dataclass(frozen=True, slots=True)
class FencedWrite:
    """One write :meth:`SQLiteFence.accept` stored: the fence's data, in acceptance order."""

    seq: int
    token: int
    writer_id: str
    op_id: str
    payload: bytes


def token_from_environment(environ: Mapping[str, str] | None = None) -> int:
    """The fencing token the daemon gave its leader-only command (``ELECTION_TOKEN``).

    :raises NotLeaderError: if it is unset or empty: this process was not started as leader.
    :raises ConfigError: if it is not a non-negative integer.
    """
    env = os.environ if environ is None else environ
    text = env.get(TOKEN_VARIABLE, "").strip()
    if not text:
        raise NotLeaderError(f"{TOKEN_VARIABLE} is not set: only a leader-only command gets a token")
    try:
        token = int(text)
    except ValueError:
        raise ConfigError(TOKEN_VARIABLE, f"must be an integer, not {text!r}") from None
    _check_token(token, TOKEN_VARIABLE)
    return token


def _check_token(token: object, field: str) -> int:
    if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token <= _MAX_TOKEN:
        raise ConfigError(field, f"must be an integer in [0, 2**63), not {token!r}")
    return token


class SQLiteFence:
    """A fence kept in a SQLite database: the highest accepted token, and a log of every request.

    Every decision is one ``BEGIN IMMEDIATE`` transaction, so concurrent processes using the same
    file are serialised by SQLite's lock, and it is committed with ``synchronous=FULL`` (WAL
    journal): a decision the caller saw survives a crash of the process or the machine. A
    token is accepted if it is above the high-water mark, or equal to it and from the writer
    that first used it (a leader writes many times per term); anything else is rejected.

    :param path: the database file; created with the fence's tables if missing. Your own
        tables may live in the same file and be written in the fence's transaction
        (:meth:`fenced`).
    :param busy_timeout_s: how long to wait for another process's transaction.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        if not busy_timeout_s > 0:
            raise ConfigError(
                "busy_timeout_s", f"must be a positive number of seconds, not {busy_timeout_s!r}"
            )
        self.path = Path(path)
        # Autocommit mode: transactions are begun explicitly, with the lock taken up front.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_s)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self._transaction():
                for statement in _SCHEMA:
                    self._db.execute(statement)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- deciding --------------------------------------------------------------------------

    def accept(self, token: int, writer_id: str, op_id: str, payload: bytes | str = b"") -> bool:
        """Decide one write and store ``payload`` if accepted; True if it was.

        The decision, the request's record and the payload are one transaction.
        """
        try:
            self.write(token, writer_id, op_id, payload)
        except StaleTokenError:
            return False
        return True

    def write(self, token: int, writer_id: str, op_id: str, payload: bytes | str = b"") -> None:
        """As :meth:`accept`, but a refused write raises :class:`StaleTokenError`."""
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        with self._fenced(token, writer_id, op_id) as (db, seq):
            db.execute(
                "INSERT INTO fence_writes (seq, token, writer_id, op_id, payload) VALUES (?, ?, ?, ?, ?)",
                (seq, token, writer_id, op_id, data),
            )

    @contextlib.contextmanager
    def fenced(self, token: int, writer_id: str, op_id: str) -> Iterator[sqlite3.Connection]:
        """Run your own statements in the transaction that accepts ``token``.

        Yields the connection inside the transaction; leaving the block commits your
        statements together with the fence's decision. If the token is refused, the
        refusal is recorded and :class:`StaleTokenError` raised before your block runs. If
        your block raises, everything rolls back, the request's record too.
        """
        with self._fenced(token, writer_id, op_id) as (db, _seq):
            yield db

    @contextlib.contextmanager
    def _fenced(self, token: int, writer_id: str, op_id: str) -> Iterator[tuple[sqlite3.Connection, int]]:
        _check_token(token, "token")
        if not writer_id:
            raise ConfigError("writer_id", "must not be empty")
        received_monotonic_s = time.monotonic()
        received_at = time.time()
        with self._transaction():
            highest = self.high_water_mark()
            if highest is None or token > highest[0] or (token == highest[0] and writer_id == highest[1]):
                reason = ACCEPTED
            else:
                reason = STALE_TOKEN if token < highest[0] else TOKEN_TAKEN
            cursor = self._db.execute(
                "INSERT INTO fence_requests "
                "(token, writer_id, op_id, verdict, reason, received_monotonic_s, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token,
                    writer_id,
                    op_id,
                    "accepted" if reason == ACCEPTED else "rejected",
                    reason,
                    received_monotonic_s,
                    received_at,
                ),
            )
            if reason == ACCEPTED:
                self._db.execute(
                    "INSERT INTO fence_high_water (id, token, writer_id) VALUES (1, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET token = excluded.token, writer_id = excluded.writer_id",
                    (token, writer_id),
                )
                assert cursor.lastrowid is not None
                yield self._db, cursor.lastrowid
        # Raised only once the refusal's record is committed.
        if reason != ACCEPTED:
            raise StaleTokenError(token, writer_id, highest, reason)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------

    def high_water_mark(self) -> tuple[int, str] | None:
        """The highest accepted token and the writer that first used it; None before any write."""
        row = self._db.execute("SELECT token, writer_id FROM fence_high_water WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row is not None else None

    def requests(self) -> list[FenceRequest]:
        """Every recorded request, in decision order."""
        rows = self._db.execute(
            "SELECT seq, token, writer_id, op_id, verdict, reason, received_monotonic_s, received_at "
            "FROM fence_requests ORDER BY seq"
        ).fetchall()
        return [
            FenceRequest(
                seq=seq,
                token=token,
                writer_id=writer_id,
                op_id=op_id,
                accepted=verdict == "accepted",
                reason=reason,
                received_monotonic_s=received_monotonic_s,
                received_at=received_at,
            )
            for seq, token, writer_id, op_id, verdict, reason, received_monotonic_s, received_at in rows
        ]

    def writes(self) -> list[FencedWrite]:
        """Every write :meth:`accept` stored, in acceptance order: the fence's data."""
        rows = self._db.execute(
            "SELECT seq, token, writer_id, op_id, payload FROM fence_writes ORDER BY seq"
        ).fetchall()
        return [
            FencedWrite(seq, token, writer_id, op_id, bytes(payload))
            for seq, token, writer_id, op_id, payload in rows
        ]
