"""The command line: ``python -m election_daemon`` runs one participant; subcommands operate.

Every failure the user can cause ends in one line on stderr and a documented exit code
(:class:`election_daemon.daemon.exitcodes.ExitCode`), never a traceback. Only a bug gives
exit code 1, with its traceback in the structured log. The options, the error line and the
mapping from exceptions to exit codes live in :mod:`election_daemon.cli.options`, which every
command imports; no command imports this module.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

__all__ = ["SUBCOMMANDS", "main"]

Subcommand = Callable[[Sequence[str], Mapping[str, str]], int]

# "module:function" of each command, imported only when used so that the daemon's start pays
# for none of the subcommands, nor a subcommand for the daemon. Without a subcommand, the
# daemon runs.
SUBCOMMANDS: dict[str, str] = {
    "status": "election_daemon.cli.observe:status_main",
    "watch": "election_daemon.cli.observe:watch_main",
    "step-down": "election_daemon.cli.stepdown:main",
    "dashboard": "election_daemon.cli.dashboard:main",
    "verify": "election_daemon.cli.verify:main",
}
_DAEMON = "election_daemon.cli.run:run_daemon"


def _command(target: str) -> Subcommand:
    module, _, function = target.partition(":")
    command: Subcommand = getattr(importlib.import_module(module), function)
    return command


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ
    # aiozk reports every reconnect on stderr; our own events and errors say what matters.
    logging.getLogger("aiozk").setLevel(logging.CRITICAL)
    if args and args[0] in SUBCOMMANDS:
        return _command(SUBCOMMANDS[args[0]])(args[1:], environ)
    return _command(_DAEMON)(args, environ)
