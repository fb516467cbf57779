"""A leader-only command for the daemon's tests: it records its start, environment and stop in files.

Usage::

    python _leader_child.py STATE_DIR [--ignore-term | --stop-delay S] [--grandchild] [--watch-group PGID]...

Once ready (SIGTERM disposition set, grandchild forked) it writes ``STATE_DIR/<pid>.start.json``:
``pid``, ``pgid``, ``started_monotonic`` (``time.monotonic()``, one clock for every process of
the machine), ``env`` (the ``ELECTION_*`` variables and any of systemd's notify variables it was
given), ``grandchild`` (its pid or null) and ``live_groups`` (which ``--watch-group`` process
groups still had a live member when it started). On SIGTERM, unless ``--ignore-term``, it takes
``--stop-delay`` seconds to shut down (0 by default), then writes ``STATE_DIR/<pid>.stop.json``
(``stopped_monotonic``) and exits 0; otherwise it sleeps until killed. ``--grandchild`` forks a
process that stays in the group and sleeps; it ignores SIGTERM too with ``--ignore-term``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from _daemons import group_alive

_RECORDED_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _write_json(path: Path, value: object) -> None:
    # Renamed into place: the test polls for the file and must never read half of it.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value))
    partial.rename(path)


def _sleep_forever() -> None:
    while True:
        signal.pause()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--stop-delay", type=float, default=0.0)
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--watch-group", type=int, action="append", default=[])
    args = parser.parse_args()
    state_dir: Path = args.state_dir
    live_groups = [pgid for pgid in args.watch_group if group_alive(pgid)]
    pid = os.getpid()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        time.sleep(args.stop_delay)
        _write_json(state_dir / f"{pid}.stop.json", {"stopped_monotonic": time.monotonic()})
        sys.exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_term else on_term)
    grandchild = None
    if args.grandchild:
        grandchild = os.fork()
        if grandchild == 0:
            if not args.ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _sleep_forever()
    env = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("ELECTION_") or name in _RECORDED_VARIABLES
    }
    _write_json(
        state_dir / f"{pid}.start.json",
        {
            "pid": pid,
            "pgid": os.getpgid(0),
            "started_monotonic": time.monotonic(),
            "env": env,
            "grandchild": grandchild,
            "live_groups": live_groups,
        },
    )
    _sleep_forever()


if __name__ == "__main__":
    main()
