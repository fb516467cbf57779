"""What the demo does, and its command line: ``--faults``, ``--seed``, ``--session-timeout``.

The flags are rows of the command line's one table (:data:`election_daemon.cli.options.OPTIONS`),
read from flags only: an ``ELECTION_DAEMON_SESSION_TIMEOUT`` meant for a real daemon does not
change the show.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from election_daemon.cli.options import Command, load
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import ConfigError

__all__ = [
    "COMMAND",
    "ELECTION_PATH",
    "EXIT_INTERRUPTED",
    "PARTICIPANT_IDS",
    "TICK_TIME_MS",
    "DemoConfig",
    "parse_args",
]

PARTICIPANT_IDS = ("alpha", "bravo", "charlie")
ELECTION_PATH = "/demo/leader"

TICK_TIME_MS = 200
"""The ensemble's tick: short, so that a killed leader's session expires within seconds."""
# What the ensemble grants: ZooKeeper's default range of 2 to 20 ticks.
_MIN_SESSION_TIMEOUT_S = 2 * TICK_TIME_MS / 1000
_MAX_SESSION_TIMEOUT_S = 20 * TICK_TIME_MS / 1000
_MAX_FAULTS = 100

EXIT_INTERRUPTED = 130
"""Ctrl-C or SIGTERM ended the show, as a shell reports a SIGINT: the command line's mapping
treats Ctrl-C as a clean stop (0), but an interrupted demo has not shown what it promised."""

COMMAND = Command(
    prog="python -m election_daemon.cli.demo",
    description=(
        "Start a three-server ZooKeeper ensemble and three election daemons, then stop or kill\n"
        "the leader a few times and show each failover."
    ),
    options=("faults", "seed", "session-timeout"),
    help={
        "faults": "how many leaders to stop or kill (default 4)",
        "seed": "seed for the choice and timing of the faults (default: random)",
        "session-timeout": "the daemons' ZooKeeper session timeout (default 2)",
    },
    environment=False,
    notes=(f"Ctrl-C or SIGTERM stops the daemons and the ensemble and exits with {EXIT_INTERRUPTED}.", ""),
    exit_codes=(ExitCode.OK, ExitCode.FAILURE, ExitCode.USAGE),
    exit_meanings={
        ExitCode.OK: "every failover happened in time, one leader-only command at a time",
        ExitCode.FAILURE: (
            "a failover missed its deadline, a daemon died unbidden, two leader-only commands "
            "ran at once, or the ensemble did not start"
        ),
        ExitCode.USAGE: "bad command line",
    },
)


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What the demo does: how many faults, the random seed, the daemons' session timeout."""

    faults: int = 4
    seed: int = 0
    session_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.faults <= _MAX_FAULTS:
            raise ConfigError("--faults", f"must be between 1 and {_MAX_FAULTS}, got {self.faults}")
        if not (
            math.isfinite(self.session_timeout_s)
            and _MIN_SESSION_TIMEOUT_S <= self.session_timeout_s <= _MAX_SESSION_TIMEOUT_S
        ):
            raise ConfigError(
                "--session-timeout",
                f"must be between {_MIN_SESSION_TIMEOUT_S:g} and {_MAX_SESSION_TIMEOUT_S:g} seconds, "
                f"got {self.session_timeout_s:g}",
            )

    @property
    def failover_deadline_s(self) -> float:
        """A killed leader waits out its session's expiry; the rest is slack for a loaded machine."""
        return 5.0 + 3.0 * self.session_timeout_s


def parse_args(argv: Sequence[str]) -> DemoConfig:
    """The demo's flags; without ``--seed``, a random one (shown in the header, to replay a run).

    :raises ConfigError: for a bad flag or value.
    :raises SystemExit: with status 0, after ``--help``.
    """
    settings = load(COMMAND, argv, {})
    # The options' destinations are DemoConfig's fields: faults, seed, session_timeout_s.
    given = settings.values()
    if given.get("seed") is None:
        given["seed"] = random.SystemRandom().randrange(1_000_000)
    return DemoConfig(**given)
