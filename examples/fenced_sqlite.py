"""A leader-only command that writes to SQLite behind a fence, using the term's ELECTION_TOKEN.

Run it under the daemon, on every machine that may lead::

    python -m election_daemon --hosts zk1:2181,zk2:2181,zk3:2181 --path /app/ledger-writer \\
        --on-child-exit rejoin -- python examples/fenced_sqlite.py /shared/ledger.db

While leading, it appends one row a second to the table ``ledger``. Each row is inserted in
the transaction that checks the term's token against the highest token the database has
accepted (:class:`election_daemon.fencing.SQLiteFence`): a deposed leader that writes on, because
it was paused or cut off and does not know yet, is refused before it writes anything. It then
exits with status 75 (EX_TEMPFAIL); with ``--on-child-exit rejoin`` its daemon contends again.

Each line it prints is one JSON object: ``{"wrote": N, "token": T, "writer": ID}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path

from election_daemon.errors import ConfigError, NotLeaderError
from election_daemon.fencing import SQLiteFence, StaleTokenError, token_from_environment

EXIT_STALE = 75  # EX_TEMPFAIL: another leader has taken over; try again as a contender


def _create_ledger(db: Path) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS ledger ("
            "id INTEGER PRIMARY KEY, token INTEGER NOT NULL, writer TEXT NOT NULL, "
            "entry INTEGER NOT NULL, written_at REAL NOT NULL)"
        )
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path, help="the SQLite database file")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rows (default 1)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many rows (default: never)")
    args = parser.parse_args()
    try:
        token = token_from_environment()
    except (NotLeaderError, ConfigError) as e:
        print(f"fenced_sqlite: {e}", file=sys.stderr)
        return 2
    writer = os.environ.get("ELECTION_ID") or socket.gethostname()
    _create_ledger(args.db)
    entry = 0
    with SQLiteFence(args.db) as fence:
        while args.count == 0 or entry < args.count:
            entry += 1
            try:
                # The token check and the insert commit together, or not at all.
                with fence.fenced(token, writer, op_id=f"{writer}/{token}/{entry}") as db:
                    db.execute(
                        "INSERT INTO ledger (token, writer, entry, written_at) VALUES (?, ?, ?, ?)",
                        (token, writer, entry, time.time()),
                    )
            except StaleTokenError as e:
                print(f"fenced_sqlite: {e}", file=sys.stderr)
                return EXIT_STALE
            print(json.dumps({"wrote": entry, "token": token, "writer": writer}), flush=True)
            time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
