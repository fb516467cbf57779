"""The ``verify`` command line: its flags, checked into :class:`VerifyOptions` or a :class:`ConfigError`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from election_daemon.cli.verify._nemesis import FAULTS, SERVER_FAULTS, applicable_faults
from election_daemon.errors import ConfigError
from election_daemon.library.limits import parse_hosts

__all__ = ["VerifyOptions", "build_parser", "check_report_dir", "parse_options"]

_QUICK_SESSION_TIMEOUT_S = 2.0
_SESSION_TIMEOUT_RANGE_S = (1.0, 60.0)
_ENSEMBLE_SIZES = (3, 5)
_PARTICIPANTS_RANGE = (2, 9)


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    hosts: str | None
    """The user's ZooKeeper; None runs a local ensemble."""
    ensemble_size: int
    participants: int
    duration_s: float | None
    faults: int | None
    faults_from: tuple[str, ...]
    seed: int
    session_timeout_s: float
    report_dir: Path
    quick: bool

    @property
    def kill_grace_s(self) -> float:
        """The daemons' default: a sixth of the session timeout."""
        return self.session_timeout_s / 6

    @property
    def mode(self) -> str:
        """``quick``, ``once`` (every fault once), ``duration`` or ``count`` (soaks)."""
        if self.quick:
            return "quick"
        if self.duration_s is not None:
            return "duration"
        if self.faults is not None:
            return "count"
        return "once"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError("verify", message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="election-daemon verify",
        description=(
            "Run daemons under injected faults against a fenced register, check the history "
            "(safety, containment, liveness, no lost writes) and write a report."
        ),
        epilog=(
            f"faults: {', '.join(FAULTS)}. With --hosts only those that need no control of the "
            f"servers: {', '.join(applicable_faults(local_servers=False))}. "
            "Exit status 0 if every check passed, 7 on any violation, 2 on bad input."
        ),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--hosts", metavar="HOSTS", help="target this ZooKeeper instead of a local ensemble")
    where.add_argument(
        "--ensemble", type=int, metavar="N", default=3, help="size of the local ensemble: 3 or 5 (default 3)"
    )
    parser.add_argument("--participants", type=int, metavar="N", default=3, help="daemons (default 3)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, metavar="SECONDS", help="soak: random faults for this long")
    length.add_argument("--faults", type=int, metavar="N", help="soak: this many random faults")
    length.add_argument(
        "--quick", action="store_true", help="CI: every fault once, T = 2 s, in under three minutes"
    )
    parser.add_argument("--faults-from", metavar="LIST", help="comma-separated fault names to draw from")
    parser.add_argument("--seed", type=int, metavar="S", help="seed of the fault schedule (default random)")
    parser.add_argument(
        "--session-timeout",
        type=float,
        metavar="SECONDS",
        help=f"the daemons' session timeout T (default {_QUICK_SESSION_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--report", type=Path, metavar="DIR", default=Path("verify-report"), help="report directory"
    )
    return parser


def parse_options(argv: Sequence[str]) -> VerifyOptions:
    """The options, or ConfigError naming the flag at fault (SystemExit for --help)."""
    args = build_parser().parse_args(list(argv))
    if args.hosts is not None:
        parse_hosts(args.hosts, field="--hosts")
    if args.ensemble not in _ENSEMBLE_SIZES:
        raise ConfigError("--ensemble", f"must be 3 or 5, not {args.ensemble}")
    low, high = _PARTICIPANTS_RANGE
    if not low <= args.participants <= high:
        raise ConfigError("--participants", f"must be {low} to {high}, not {args.participants}")
    if args.duration is not None and not args.duration > 0:
        raise ConfigError("--duration", f"must be a positive number of seconds, not {args.duration:g}")
    if args.faults is not None and args.faults < 1:
        raise ConfigError("--faults", f"must be at least 1, not {args.faults}")
    timeout_s = _QUICK_SESSION_TIMEOUT_S if args.session_timeout is None else args.session_timeout
    low_s, high_s = _SESSION_TIMEOUT_RANGE_S
    if not low_s <= timeout_s <= high_s:
        raise ConfigError("--session-timeout", f"must be {low_s:g} to {high_s:g} seconds, not {timeout_s:g}")
    return VerifyOptions(
        hosts=args.hosts,
        ensemble_size=args.ensemble,
        participants=args.participants,
        duration_s=args.duration,
        faults=args.faults,
        faults_from=_fault_names(args.faults_from, local_servers=args.hosts is None),
        seed=args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big"),
        session_timeout_s=timeout_s,
        report_dir=args.report,
        quick=args.quick,
    )


def check_report_dir(report: Path) -> None:
    """Create the report directory now and make sure files can be written in it: a place we
    cannot write to is a usage error found before any daemon runs, not an internal error after."""
    try:
        report.mkdir(parents=True, exist_ok=True)
        probe = report / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError("--report", f"cannot write to {report}: {e.strerror or e}") from None


def _fault_names(text: str | None, *, local_servers: bool) -> tuple[str, ...]:
    if text is None:
        return tuple(applicable_faults(local_servers=local_servers))
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise ConfigError("--faults-from", "names no fault")
    for name in names:
        if name not in FAULTS:
            raise ConfigError("--faults-from", f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        if name in SERVER_FAULTS and not local_servers:
            allowed = ", ".join(applicable_faults(local_servers=False))
            raise ConfigError("--faults-from", f"{name} needs a local ensemble; with --hosts: {allowed}")
    return names
