"""The observe-only subcommands ``status`` and ``watch``, and the options they share with ``dashboard``.

Both read the election through an :class:`election_daemon.library.observer.Observer`: they create no
node and never affect who leads. Identities and data come from whoever can write under the
election path, so on a terminal they are shown escaped (no control characters, no bidi
overrides) and cut to a width; JSON output escapes everything outside ASCII.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from election_daemon.cli import PROG, error
from election_daemon.daemon import jsonout
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.logs import SCHEMA_KEYS
from election_daemon.errors import ConfigError, ConnectTimeoutError, ZooKeeperError
from election_daemon.library.candidacy import Participant
from election_daemon.library.limits import parse_hosts, validate_election_path
from election_daemon.library.observer import LeaderChange, Observer, Snapshot

__all__ = [
    "ObserveOptions",
    "build_parser",
    "change_record",
    "initial_record",
    "load_options",
    "run_observer_command",
    "status_main",
    "terminal_text",
    "until_interrupted",
    "watch_main",
]

_ENV_PREFIX = "ELECTION_DAEMON_"
_SESSION_TIMEOUT_RANGE_S = (0.1, 3600.0)
_CONNECT_TIMEOUT_RANGE_S = (0.1, 86400.0)
# The daemon's codes, as they apply to a command that only reads.
_EXIT_CODES = {
    ExitCode.OK: "done, or interrupted by SIGINT or SIGTERM",
    ExitCode.FAILURE: "unexpected internal error, which is a bug",
    ExitCode.USAGE: "bad command line or environment",
    ExitCode.ZK_UNREACHABLE: "no ZooKeeper server answered within --connect-timeout",
    ExitCode.ZK_REFUSED: "ZooKeeper refused a request, such as reading the path without permission",
}
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_ID_WIDTH = 48
_DATA_WIDTH = 60


@dataclass(frozen=True, slots=True)
class ObserveOptions:
    """What every observing subcommand needs, validated."""

    hosts: str
    path: str
    session_timeout_s: float
    connect_timeout_s: float

    def observer(self) -> Observer:
        return Observer(
            self.hosts,
            self.path,
            session_timeout_s=self.session_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
        )


class _ArgumentParser(argparse.ArgumentParser):
    """Parse errors raise ConfigError (one line, exit code 2) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError("command line", message)


def build_parser(command: str, description: str) -> argparse.ArgumentParser:
    """A parser for ``election-daemon COMMAND`` with the shared options; add the command's own."""
    parser = _ArgumentParser(
        prog=f"{PROG} {command}",
        description=description,
        epilog="\n".join(
            [
                "environment:",
                "  ELECTION_DAEMON_HOSTS, ELECTION_DAEMON_PATH, ELECTION_DAEMON_SESSION_TIMEOUT and",
                "  ELECTION_DAEMON_CONNECT_TIMEOUT stand in for the options; the options win.",
                "",
                "exit codes:",
                *(f"  {code.value}  {meaning}" for code, meaning in _EXIT_CODES.items()),
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        exit_on_error=False,
    )
    parser.add_argument("--hosts", metavar="HOSTS", help="ZooKeeper connect string host:port[,...][/chroot]")
    parser.add_argument("--path", metavar="PATH", help="the election path")
    parser.add_argument(
        "--session-timeout",
        metavar="SECONDS",
        help="session timeout for this observer's session (default 10)",
    )
    parser.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        help="exit with code 3 if no ZooKeeper server answers within this (default 30)",
    )
    return parser


def load_options(
    parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[ObserveOptions, argparse.Namespace]:
    """Parse ``argv`` with environment fallbacks; raise ConfigError naming the flag."""
    try:
        args = parser.parse_args(list(argv))
    except argparse.ArgumentError as e:
        raise ConfigError((e.argument_name or "command line").partition("/")[0], e.message) from None

    def setting(flag: str) -> tuple[str | None, str]:
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            return value, f"--{flag}"
        variable = _ENV_PREFIX + flag.upper().replace("-", "_")
        # An empty variable means unset, as for the daemon.
        return environ.get(variable) or None, variable

    hosts, hosts_origin = setting("hosts")
    path, path_origin = setting("path")
    for value, flag, origin in ((hosts, "--hosts", hosts_origin), (path, "--path", path_origin)):
        if value is None:
            raise ConfigError(flag, f"is required: give {flag} or set {origin}")
    assert hosts is not None and path is not None
    parse_hosts(hosts, hosts_origin)
    validate_election_path(path, path_origin)
    session_timeout_s = _seconds(*setting("session-timeout"), default=10.0, bounds=_SESSION_TIMEOUT_RANGE_S)
    connect_timeout_s = _seconds(*setting("connect-timeout"), default=30.0, bounds=_CONNECT_TIMEOUT_RANGE_S)
    return ObserveOptions(hosts, path, session_timeout_s, connect_timeout_s), args


def _seconds(text: str | None, origin: str, *, default: float, bounds: tuple[float, float]) -> float:
    if text is None:
        return default
    low, high = bounds
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(origin, f"must be a number of seconds, got {terminal_text(text, 40)!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(origin, f"must be between {low:g} and {high:g} seconds, got {text}")
    return value


def run_observer_command(
    command: str,
    description: str,
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[ObserveOptions, argparse.Namespace], Coroutine[Any, Any, int]],
) -> int:
    """Parse, run, and turn every failure the user can cause into one line and its exit code."""
    parser = build_parser(command, description)
    add_arguments(parser)
    try:
        options, args = load_options(parser, argv, environ)
    except ConfigError as e:
        error(str(e))
        return ExitCode.USAGE
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        return asyncio.run(run(options, args))
    except ConfigError as e:
        error(str(e))
        return ExitCode.USAGE
    except ConnectTimeoutError as e:
        error(str(e))
        return ExitCode.ZK_UNREACHABLE
    except ZooKeeperError as e:
        error(f"ZooKeeper refused: {e}")
        return ExitCode.ZK_REFUSED
    except KeyboardInterrupt:
        return ExitCode.OK
    except BrokenPipeError:
        # The reader went away (``watch | head -1``): done. Keep the final flush quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK


# -- showing attacker-controlled text ------------------------------------------------------


def terminal_text(value: str, limit: int) -> str:
    """``value`` safe for a terminal: unprintable characters escaped, at most ``limit`` characters."""
    escaped = "".join(ch if ch.isprintable() else _escape(ch) for ch in value[: limit + 1])
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _identity(participant: Participant) -> str:
    identity: object = participant.id
    if identity is None:
        return "?"
    # Whatever the node held: the library decodes it, but a terminal must never choke on it.
    return terminal_text(identity if isinstance(identity, str) else jsonout.dumps(identity), _ID_WIDTH)


def _data(participant: Participant) -> str:
    data = participant.data
    if data is None:
        return ""
    if isinstance(data, bytes):
        # Only the start can be shown: encode no more than that.
        return terminal_text("base64:" + base64.b64encode(data[:_DATA_WIDTH]).decode("ascii"), _DATA_WIDTH)
    text = jsonout.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return terminal_text(text, _DATA_WIDTH)


def _who(participant: Participant | None) -> str:
    if participant is None:
        return "no leader"
    return f"{_identity(participant)} (token {participant.token})"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    for unit_s, unit, sub_s, sub in ((86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s")):
        if whole >= unit_s:
            return f"{whole // unit_s} {unit} {whole % unit_s // sub_s} {sub}"
    raise AssertionError("unreachable")


def _timestamp(unix_s: float) -> str:
    """ISO 8601 UTC, as the daemon's log lines write it."""
    return datetime.fromtimestamp(unix_s, UTC).isoformat().replace("+00:00", "Z")


# -- status ------------------------------------------------------------------------------


_STATUS_DESCRIPTION = (
    "Show the election at PATH: every participant in queue order, the leader first, and how\n"
    "long the leader has led: at most since its node was created, as ZooKeeper records no\n"
    "moment of takeover. Joins nothing."
)


def status_main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``election-daemon status``: print the election's participants once."""
    return run_observer_command(
        "status", _STATUS_DESCRIPTION, argv, environ, add_arguments=_status_arguments, run=_status
    )


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


async def _status(options: ObserveOptions, args: argparse.Namespace) -> int:
    async with options.observer() as observer:
        snapshot = await observer.snapshot()
    if args.json:
        print(jsonout.dumps(snapshot.as_dict()))
    elif sys.stdout.isatty():
        Console(highlight=False).print(_status_table(snapshot))
    else:
        print(_status_text(snapshot))
    return ExitCode.OK


def _headline(snapshot: Snapshot) -> str:
    path = terminal_text(snapshot.path, 200)
    if snapshot.leader is None:
        return f"{path}: no leader"
    led = snapshot.leader_for_s
    bound = "" if snapshot.takeover_seen else "at most "
    duration = "" if led is None else f", leading for {bound}{_duration(led)}"
    return f"{path}: leader {_who(snapshot.leader)}{duration}"


_COLUMNS = ("", "ID", "RECIPE", "TOKEN", "SESSION", "PRIORITY", "NODE", "DATA")


def _rows(snapshot: Snapshot) -> list[tuple[str, ...]]:
    return [
        (
            "*" if p.is_leader else "",
            _identity(p),
            p.recipe.value,
            str(p.token),
            f"0x{p.session_id:x}",
            str(p.priority),
            p.node.rpartition("/")[2],
            _data(p),
        )
        for p in snapshot.participants
    ]


def _status_text(snapshot: Snapshot) -> str:
    lines = [_headline(snapshot)]
    rows = _rows(snapshot)
    if rows:
        table = [_COLUMNS, *rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table
        ]
    return "\n".join(lines)


def _status_table(snapshot: Snapshot) -> Table:
    table = Table(title=Text(_headline(snapshot)), title_justify="left", box=box.SIMPLE_HEAD)
    for name in _COLUMNS:
        table.add_column(name, no_wrap=name != "DATA", overflow="ellipsis")
    for row, participant in zip(_rows(snapshot), snapshot.participants, strict=True):
        cells = ["★" if participant.is_leader else "", *row[1:]]
        # Text, not str: rich would read "[...]" in an identity as markup.
        table.add_row(*(Text(cell) for cell in cells), style="bold green" if participant.is_leader else "")
    return table


# -- watch -------------------------------------------------------------------------------


_WATCH_DESCRIPTION = (
    "Print a line each time the leader of the election at PATH changes, riding through\n"
    "ZooKeeper faults, until interrupted (SIGINT or SIGTERM: exit code 0). The first line\n"
    "shows the leader at start (event leader_observed with --json). Joins nothing."
)


def watch_main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``election-daemon watch``: a line per leader change until SIGINT or SIGTERM."""
    return run_observer_command(
        "watch", _WATCH_DESCRIPTION, argv, environ, add_arguments=_watch_arguments, run=_watch
    )


def _watch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON lines in the daemon's log schema")


async def _watch(options: ObserveOptions, args: argparse.Namespace) -> int:
    await until_interrupted(_print_changes(options, as_json=args.json))
    return ExitCode.OK


async def _print_changes(options: ObserveOptions, *, as_json: bool) -> None:
    observer = options.observer()
    changes = observer.changes()
    async with observer:
        first = observer.latest()
        assert first is not None
        _emit(initial_record(first) if as_json else _initial_line(first), as_json)
        async for change in changes:
            _emit(change_record(options.path, change) if as_json else _change_line(change), as_json)


async def until_interrupted(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends (raising what it raises) or SIGINT or SIGTERM cancels it."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def _emit(line: str | dict[str, Any], as_json: bool) -> None:
    print(jsonout.dumps(line) if as_json else line, flush=True)


def _participant_fields(participant: Participant | None) -> dict[str, Any]:
    return {
        "state": "leading" if participant is not None else None,
        "id": participant.id if participant is not None else None,
        "recipe": participant.recipe.value if participant is not None else None,
        "node": participant.node if participant is not None else None,
        "token": participant.token if participant is not None else None,
        "session_id": f"0x{participant.session_id:x}" if participant is not None else None,
    }


def _schema_ordered(fields: dict[str, Any]) -> dict[str, Any]:
    record = {key: fields.pop(key, None) for key in SCHEMA_KEYS}
    record.update(fields)
    return record


def change_record(path: str, change: LeaderChange) -> dict[str, Any]:
    """A leader change as a JSON line of the daemon's log schema (``event`` leader_changed)."""
    previous = change.previous
    return _schema_ordered(
        {
            "event": "leader_changed",
            **_participant_fields(change.leader),
            "previous_state": None,
            "reason": change.reason,
            "path": path,
            "timestamp": _timestamp(change.time),
            "previous_id": previous.id if previous is not None else None,
            "previous_token": previous.token if previous is not None else None,
            "leaderless_s": change.leaderless_s,
        }
    )


def initial_record(snapshot: Snapshot) -> dict[str, Any]:
    """The leader when watching starts (``event`` leader_observed), in the same schema."""
    return _schema_ordered(
        {
            "event": "leader_observed",
            **_participant_fields(snapshot.leader),
            "previous_state": None,
            "reason": "watch_started",
            "path": snapshot.path,
            "timestamp": _timestamp(snapshot.taken_at),
            "leader_for_s": snapshot.as_dict()["leader_for_s"],
        }
    )


def _initial_line(snapshot: Snapshot) -> str:
    return f"{_timestamp(snapshot.taken_at)}  watching {_headline(snapshot)}"


def _change_line(change: LeaderChange) -> str:
    who = f"{_who(change.previous)} -> {_who(change.leader)}"
    return f"{_timestamp(change.time)}  leader changed: {who}  ({change.reason})"
