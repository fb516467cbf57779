"""``python -m election_daemon.testing``: a sandbox ZooKeeper (or ensemble) to try things against.

Starts real servers with the harness (:class:`ZooKeeperEnsemble`), prints the connect string
alone on the first line of stdout and a ``ready`` line after it, then serves until Ctrl-C or
SIGTERM, when it kills the servers and deletes their directory. A script can read the first
line; a person reads the second.

The command line goes through argparse as every command's does; the command line's own option
table (:mod:`election_daemon.cli.options`) is out of reach: the harness stands beside the
library and may not import the command line (``make check`` holds that).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from election_daemon.errors import ElectionError
from election_daemon.testing._ensemble import ZooKeeperEnsemble

__all__ = ["main"]

PROG = "python -m election_daemon.testing"
TICK_TIME_MS = 200
"""Short, so that a killed participant's session expires within seconds of its timeout."""
MAX_SESSION_TIMEOUT_MS = 60_000
"""ZooKeeper grants 2 to 20 ticks by default (4 s at most here): the daemon's default 10 s
would be refused (exit 4), so the sandbox grants whatever a participant would ask for."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  stopped by Ctrl-C or SIGTERM: the servers were killed and their directory deleted
  {EXIT_FAILED}  ZooKeeper is not installed, or a server did not start (the message says why)
  {EXIT_USAGE}  bad command line"""


class _Parser(argparse.ArgumentParser):
    """argparse, with the project's one-line usage errors instead of usage and a message."""

    def error(self, message: str) -> NoReturn:
        _error(message)
        raise SystemExit(EXIT_USAGE)


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Start a local ZooKeeper server (or ensemble) on free loopback ports for trying\n"
            "election_daemon out; print its connect string, then a 'ready' line; stop at Ctrl-C.\n"
            "Then, in other terminals:\n\n"
            "  python -m election_daemon --hosts HOSTS --path /sandbox/leader -- sleep infinity\n"
            "  python -m election_daemon status --hosts HOSTS --path /sandbox/leader"
        ),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--servers",
        # Text choices: int() would also take other scripts' digits ('٣').
        choices=("1", "3", "5"),
        default="1",
        help="how many servers: 1, or an ensemble of 3 or 5 (default 1)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    servers = int(args.servers)
    # SIGTERM ends the sandbox the way Ctrl-C does, through the same clean-up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        # start() kills whatever it started if it fails or is interrupted.
        with ZooKeeperEnsemble(
            servers, tick_time_ms=TICK_TIME_MS, max_session_timeout_ms=MAX_SESSION_TIMEOUT_MS
        ) as ensemble:
            size = "one server" if servers == 1 else f"an ensemble of {servers} servers"
            print(ensemble.hosts)
            print(
                f"ready: ZooKeeper, {size}, session timeouts {2 * TICK_TIME_MS / 1000:g} to "
                f"{MAX_SESSION_TIMEOUT_MS // 1000} s; Ctrl-C stops it",
                flush=True,
            )
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("stopped: servers killed, their directory deleted", file=sys.stderr)
        return EXIT_OK
    except ElectionError as e:
        _error(str(e))
        return EXIT_FAILED


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
