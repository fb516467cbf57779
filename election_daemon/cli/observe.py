"""The observe-only subcommands ``status`` and ``watch``, and the options they share with ``dashboard``.

Both read the election through an :class:`election_daemon.library.observer.Observer`: they create no
node and never affect who leads. Identities and data come from whoever can write under the
election path, so on a terminal they are shown escaped (no control characters, no bidi
overrides) and cut to a width; JSON output escapes everything outside ASCII.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from election_daemon.cli.options import CONNECTION_OPTIONS, PROG, Command, Settings, guarded, load
from election_daemon.daemon import jsonout
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.logs import SCHEMA_KEYS
from election_daemon.errors import ConfigError
from election_daemon.library.acl import AclEntry, describe, merged, open_rights, perms_text
from election_daemon.library.candidacy import Participant
from election_daemon.library.events import Event, Reason
from election_daemon.library.limits import (
    CONNECT_TIMEOUT_RANGE_S,
    SESSION_TIMEOUT_RANGE_S,
    check_seconds,
    parse_hosts,
    validate_election_path,
)
from election_daemon.library.observer import LeaderChange, Observer, Snapshot
from election_daemon.library.security import DigestAuth, check_tls, read_auth_file

__all__ = [
    "ObserveOptions",
    "change_record",
    "initial_record",
    "observer_command",
    "run_observer_command",
    "status_main",
    "terminal_text",
    "until_interrupted",
    "watch_main",
]

# The daemon's codes, as they apply to a command that only reads.
_EXIT_CODES = {
    ExitCode.OK: "done, or interrupted by SIGINT or SIGTERM",
    ExitCode.FAILURE: "unexpected internal error, which is a bug",
    ExitCode.USAGE: "bad command line or environment",
    ExitCode.ZK_UNREACHABLE: "no ZooKeeper server answered within --connect-timeout",
    ExitCode.ZK_REFUSED: (
        "ZooKeeper refused a request, such as reading the path without permission, or our credentials"
    ),
    ExitCode.TLS_FAILED: (
        "no TLS connection to ZooKeeper: a certificate refused either way, or TLS mismatched"
    ),
}
_OBSERVE_OPTIONS = CONNECTION_OPTIONS
_OBSERVE_HELP = {
    "hosts": "ZooKeeper connect string host:port[,...][/chroot]",
    "path": "the election path",
    "session-timeout": "session timeout for this observer's session (default 10)",
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
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    """The client TLS context (``--tls-*``), or None for plain connections."""
    auth: tuple[DigestAuth, ...] = field(default=(), repr=False)
    """The credentials of ``--auth-file``."""

    def observer(self) -> Observer:
        return Observer(
            self.hosts,
            self.path,
            session_timeout_s=self.session_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            tls=self.tls,
            auth=self.auth[0] if self.auth else None,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ObserveOptions:
        """The shared options, checked by the library's rules; ConfigError names the flag."""
        with settings.blame():
            hosts: str = settings.get("hosts")
            parse_hosts(hosts, "--hosts")
            verify_hostname = not settings.get("tls_no_verify_hostname", False)
            tls = check_tls(
                None,
                ca=settings.get("tls_ca"),
                cert=settings.get("tls_cert"),
                key=settings.get("tls_key"),
                verify_hostname=verify_hostname,
                field="--tls",
            )
            if tls is not None and not verify_hostname:
                print(
                    f"{PROG}: warning: --tls-no-verify-hostname: any certificate the CA signed is "
                    "accepted for any host",
                    file=sys.stderr,
                )
            auth_file = settings.get("auth_file")
            auth = () if auth_file is None else (read_auth_file(auth_file, "--auth-file"),)
            return cls(
                hosts,
                validate_election_path(settings.get("path"), "--path"),
                check_seconds(
                    "--session-timeout", settings.get("session_timeout_s", 10.0), SESSION_TIMEOUT_RANGE_S
                ),
                check_seconds(
                    "--connect-timeout", settings.get("connect_timeout_s", 30.0), CONNECT_TIMEOUT_RANGE_S
                ),
                tls=tls,
                auth=auth,
            )


def observer_command(
    name: str,
    description: str,
    options: Sequence[str] = (),
    *,
    help: Mapping[str, str] | None = None,
    exit_codes: Mapping[ExitCode, str] | None = None,
) -> Command:
    """``election-daemon NAME``: the shared options (flags and environment), then ``options``."""
    meanings = dict(sorted({**_EXIT_CODES, **(exit_codes or {})}.items()))
    return Command(
        prog=f"{PROG} {name}",
        description=description,
        options=(*_OBSERVE_OPTIONS, *options),
        help={**_OBSERVE_HELP, **(help or {})},
        required=("hosts", "path"),
        exit_codes=tuple(meanings),
        exit_meanings=meanings,
    )


def run_observer_command(
    command: Command,
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    run: Callable[[ObserveOptions, Settings], Coroutine[Any, Any, int]],
) -> int:
    """Parse, run, and turn every failure into one line and its exit code."""

    def body() -> int:
        settings = load(command, argv, environ)
        return asyncio.run(run(ObserveOptions.from_settings(settings), settings))

    return guarded(body)


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
_STATUS = observer_command(
    "status",
    _STATUS_DESCRIPTION,
    ["json"],
    help={"json": "print one JSON object"},
    # Distinct codes, so that a script can tell a leaderless election from a misspelled path.
    exit_codes={
        ExitCode.OK: "the election has a leader",
        ExitCode.USAGE: "bad command line or environment, or no election at --path (no such path)",
        ExitCode.OPERATION_FAILED: "the election has no leader: nobody is in its queue (shown all the same)",
    },
)


def status_main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``election-daemon status``: print the election's participants once."""
    return run_observer_command(_STATUS, argv, environ, run=_status)


async def _status(options: ObserveOptions, settings: Settings) -> int:
    async with options.observer() as observer:
        snapshot = await observer.snapshot()
        acl = await observer.acl()
    if acl is None:
        # Only a path that exists has an ACL. An observer waits for a missing path to appear;
        # asked once, it is a typo far more often than an election yet to begin.
        raise ConfigError("--path", f"no election at {terminal_text(snapshot.path, 200)}: no such path")
    warning = _acl_warning(snapshot.path, acl)
    code = ExitCode.OK if snapshot.leader is not None else ExitCode.OPERATION_FAILED
    if settings.get("json"):
        document = snapshot.as_dict()
        document["acl"] = [{"id": e.who, "perms": perms_text(e.perms)} for e in merged(acl)]
        document["acl_warning"] = warning
        print(jsonout.dumps(document))
        return code
    if sys.stdout.isatty():
        Console(highlight=False).print(_status_table(snapshot))
    else:
        print(_status_text(snapshot))
    print(f"acl: {terminal_text(describe(acl), 2000)}")
    if warning is not None:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return code


def _acl_warning(path: str, acl: Sequence[AclEntry]) -> str | None:
    """One line when anyone may write, create or delete under ``path``."""
    rights = open_rights(acl)
    if not rights:
        return None
    return (
        f"the ACL of {terminal_text(path, 200)} is open: world:anyone may {perms_text(rights)} "
        "(anyone may delete the leader's node, jump the queue or ask for a step-down; see --acl-participant)"
    )


def _headline(snapshot: Snapshot) -> str:
    path = terminal_text(snapshot.path, 200)
    if snapshot.leader is None:
        head = snapshot.participants[0] if snapshot.participants else None
        if head is not None and head.is_next:
            return f"{path}: no leader; next {_identity(head)} (taking over)"
        return f"{path}: no leader"
    led = snapshot.leader_for_s
    bound = "" if snapshot.takeover_seen else "at most "
    duration = "" if led is None else f", leading for {bound}{_duration(led)}"
    return f"{path}: leader {_who(snapshot.leader)}{duration}"


_COLUMNS = ("", "ID", "RECIPE", "TOKEN", "SESSION", "PRIORITY", "NODE", "DATA")


def _rows(snapshot: Snapshot) -> list[tuple[str, ...]]:
    return [
        (
            "*" if p.is_leader else ">" if p.is_next else "",
            _identity(p),
            p.recipe.value,
            # Only a leader holds a token; the others' node czxid is not one.
            str(p.token) if p.is_leader else "",
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
        cells = ["★" if participant.is_leader else "next" if participant.is_next else "", *row[1:]]
        # Text, not str: rich would read "[...]" in an identity as markup.
        table.add_row(*(Text(cell) for cell in cells), style="bold green" if participant.is_leader else "")
    return table


# -- watch -------------------------------------------------------------------------------


_WATCH_DESCRIPTION = (
    "Print a line each time the leader of the election at PATH changes, riding through\n"
    "ZooKeeper faults, until interrupted (SIGINT or SIGTERM: exit code 0). The first line\n"
    "shows the leader at start (event leader_observed with --json). Joins nothing."
)
_WATCH = observer_command(
    "watch", _WATCH_DESCRIPTION, ["json"], help={"json": "JSON lines in the daemon's log schema"}
)


def watch_main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``election-daemon watch``: a line per leader change until SIGINT or SIGTERM."""
    return run_observer_command(_WATCH, argv, environ, run=_watch)


async def _watch(options: ObserveOptions, settings: Settings) -> int:
    await until_interrupted(_print_changes(options, as_json=bool(settings.get("json"))))
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
            "event": Event.LEADER_CHANGED,
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
            "event": Event.LEADER_OBSERVED,
            **_participant_fields(snapshot.leader),
            "previous_state": None,
            "reason": Reason.WATCH_STARTED,
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
