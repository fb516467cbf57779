"""The one option layer of every command: a table of options, one parser, one error line, one
mapping from exceptions to exit codes.

Each option is one row of :data:`OPTIONS`: its flag ``--some-name``, its variable
``ELECTION_DAEMON_SOME_NAME``, its TOML key ``some-name`` (or ``some_name``), its kind and its
help. A :class:`Command` picks the rows it takes and the sources it reads; precedence is always
flag > environment > config file > default. The daemon reads all three; ``status``, ``watch``,
``step-down`` and ``dashboard`` read flags and the environment; ``verify`` reads flags only, so
that an ``ELECTION_DAEMON_HOSTS`` meant for a daemon never points its faults at production.

Errors are :class:`ConfigError` naming the flag (``"--session-timeout"``), with ``(from
ELECTION_DAEMON_SESSION_TIMEOUT)`` or ``(from key 'x' in FILE)`` when the value came from there.
:func:`guarded` turns every exception into one line on stderr and a documented exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import enum
import importlib.metadata
import logging
import os
import re
import shlex
import stat
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

from election_daemon.daemon.exitcodes import ExitCode, render_exit_codes
from election_daemon.errors import (
    ChildError,
    ConfigError,
    ConnectTimeoutError,
    ElectionError,
    InternalError,
    TLSError,
    ZooKeeperError,
)
from election_daemon.library.limits import show
from election_daemon.library.payload import MAX_DATA_BYTES

__all__ = [
    "CONFIG_ENV",
    "CONNECTION_OPTIONS",
    "ENV_PREFIX",
    "OPTIONS",
    "PROG",
    "Command",
    "Kind",
    "OperationError",
    "Option",
    "OptionParser",
    "Settings",
    "build_parser",
    "error",
    "exit_code_for",
    "guarded",
    "load",
    "version",
]

PROG = "election-daemon"
ENV_PREFIX = "ELECTION_DAEMON_"
CONFIG_ENV = "ELECTION_DAEMON_CONFIG"
MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024
"""Largest config file read; it may carry ``data`` up to ``MAX_DATA_BYTES``."""
COMMAND = "command"
"""The label of the leader-only command, which is no flag: it comes after ``--``."""


def error(message: str) -> None:
    """The one-line error every user-caused failure ends with."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def version() -> str:
    try:
        return importlib.metadata.version("election-daemon")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


# ---------------------------------------------------------------------------------------------
# The table


class Kind(enum.Enum):
    """How an option's text becomes a value, the same way from every source."""

    TEXT = "text"
    SECONDS = "seconds"
    INTEGER = "integer"
    BOOL = "bool"
    """``--x``/``--no-x``; in the environment 1, true, yes, 0, false or no."""
    SWITCH = "switch"
    """``--x`` only, off by default."""
    NAMES = "names"
    """Repeatable flag; in the environment, names separated by commas or spaces."""
    WORDS = "words"
    """The leader-only command: after ``--``, or shell words in the environment."""


# Numbers as people type them, ASCII only: int() and float() also take other scripts' digits
# ('٣'), underscores ('1_0') and words ('nan', 'infinity').
_INTEGER = re.compile(r"[ \t]*[+-]?[0-9]+[ \t]*")
_DECIMAL = re.compile(r"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
_TRUE_WORDS = frozenset({"1", "true", "yes"})
_FALSE_WORDS = frozenset({"0", "false", "no"})
_TEXT_EXPECTATIONS = {
    Kind.SECONDS: "must be a number of seconds",
    Kind.INTEGER: "must be an integer",
    Kind.BOOL: "must be one of 1, true, yes, 0, false, no",
    Kind.WORDS: "must be shell words",
    Kind.NAMES: "must be names",
}
_TOML_EXPECTATIONS = {
    Kind.TEXT: "a string",
    Kind.SECONDS: "a number of seconds",
    Kind.INTEGER: "an integer",
    Kind.BOOL: "a boolean",
    Kind.SWITCH: "a boolean",
    Kind.NAMES: "a list of strings",
    Kind.WORDS: "a list of strings",
}


def integer(text: str) -> int:
    """An integer in ASCII digits; ValueError otherwise. Named ``int`` for argparse's messages."""
    if not _INTEGER.fullmatch(text):
        raise ValueError(text)
    return int(text)


def decimal(text: str) -> float:
    """A decimal number in ASCII digits; ValueError otherwise. Named ``float`` for argparse."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError(text)
    return float(text)


integer.__name__ = "int"
decimal.__name__ = "float"


@dataclass(frozen=True)
class Option:
    """One setting as it appears on the command line, in the environment and in the file."""

    name: str
    """The flag without its dashes, and the TOML key."""
    kind: Kind
    metavar: str
    help: str
    field: str = ""
    """Where its value goes (a ``DaemonConfig`` field for the daemon's options)."""
    flag_only: bool = False
    """No variable and no TOML key: the flag's text is converted by the parser itself."""

    @property
    def dest(self) -> str:
        return self.field or self.name.replace("-", "_")

    @property
    def label(self) -> str:
        """The name errors use: the flag, or ``command``."""
        return self.name if self.kind is Kind.WORDS else f"--{self.name}"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    # -- the daemon's, which the observers share (hosts, path and the timeouts) ---------------
    Option(
        "hosts",
        Kind.TEXT,
        "HOSTS",
        "ZooKeeper connect string host:port[,host:port...][/chroot]; IPv6 as [::1]:2181; "
        "the port defaults to 2181 (required)",
    ),
    Option("path", Kind.TEXT, "PATH", "election path, e.g. /services/billing/leader (required)"),
    Option(
        "session-timeout",
        Kind.SECONDS,
        "SECONDS",
        "ZooKeeper session timeout to request; the server may clamp it (default 10)",
        field="session_timeout_s",
    ),
    Option(
        "connect-timeout",
        Kind.SECONDS,
        "SECONDS",
        "exit with code 3 if no ZooKeeper server answers within this (default 30)",
        field="connect_timeout_s",
    ),
    Option(
        "tls-ca",
        Kind.TEXT,
        "FILE",
        "connect over TLS, trusting the CAs in this PEM bundle to sign ZooKeeper's certificates",
    ),
    Option(
        "tls-cert",
        Kind.TEXT,
        "FILE",
        "client certificate (PEM) for mutual TLS; its subject is the session's x509 identity",
    ),
    Option("tls-key", Kind.TEXT, "FILE", "private key of --tls-cert (unencrypted PEM), if not in its file"),
    Option(
        "tls-no-verify-hostname",
        Kind.SWITCH,
        "",
        "accept a server certificate that does not name the host dialled (logged as a warning)",
    ),
    Option(
        "auth-file",
        Kind.TEXT,
        "FILE",
        "digest credentials: a file readable by its owner only holding one line 'digest user:password'",
    ),
    Option(
        "acl-participant",
        Kind.NAMES,
        "ID",
        "with ACLs: an id that may join the election, e.g. digest:alice:<hash> or x509:CN=...; "
        "repeatable; in the environment: ids separated by ';'; TOML: [acl] participants",
        field="acl_participants",
    ),
    Option(
        "acl-operator",
        Kind.NAMES,
        "ID",
        "with ACLs: an id that may ask for a step-down or handover (repeatable; TOML: [acl] operators)",
        field="acl_operators",
    ),
    Option(
        "acl-reader",
        Kind.NAMES,
        "ID",
        "with ACLs: an id that may read the election, world:anyone for all (repeatable; TOML: [acl] readers)",
        field="acl_readers",
    ),
    Option(
        "id",
        Kind.TEXT,
        "ID",
        "this contender's identity as others see it (default HOSTNAME:PID)",
        field="identity",
    ),
    Option(
        "data",
        Kind.TEXT,
        "JSON",
        f"JSON published with this contender's node (at most {MAX_DATA_BYTES // 1024} KiB)",
    ),
    Option(
        "kill-grace",
        Kind.SECONDS,
        "SECONDS",
        "time between SIGTERM and SIGKILL when stopping COMMAND (default session timeout / 6)",
        field="kill_grace_override_s",
    ),
    Option(
        "on-child-exit",
        Kind.TEXT,
        "exit|rejoin",
        "when COMMAND exits while leading: exit with its status, or rejoin the election (default exit)",
    ),
    Option(
        "exit-on-loss",
        Kind.BOOL,
        "",
        "exit with code 6 when leadership ends instead of rejoining the election",
    ),
    Option(
        "log-format",
        Kind.TEXT,
        "json|console",
        "log format (default json when stdout is not a terminal, console otherwise)",
    ),
    Option("on-elected", Kind.TEXT, "CMD", "shell command to run when leadership starts"),
    Option(
        "on-revoked",
        Kind.TEXT,
        "CMD",
        "shell command to run when leadership ends, once COMMAND's process group is gone",
    ),
    Option(
        "on-change",
        Kind.TEXT,
        "CMD",
        "shell command to run for every transition (ELECTION_EVENT, ELECTION_STATE, ELECTION_REASON)",
    ),
    Option(
        "child-output",
        Kind.TEXT,
        "inherit|stderr|log",
        "where COMMAND's stdout and stderr go: the daemon's, its stderr, or child_output log lines "
        "(default log with JSON logs, inherit with console logs)",
    ),
    Option(
        "try",
        Kind.SECONDS,
        "SECONDS",
        "exit with code 11, without running COMMAND, if not elected within this",
        field="try_s",
    ),
    Option(
        "once",
        Kind.BOOL,
        "",
        "run COMMAND once as leader, then resign and exit with its status (needs COMMAND)",
    ),
    Option(
        "hook-timeout",
        Kind.SECONDS,
        "SECONDS",
        "kill a hook command still running after this (default 10)",
        field="hook_timeout_s",
    ),
    Option(
        "http", Kind.TEXT, "HOST:PORT", "serve the HTTP endpoints on this address (port 0: any free port)"
    ),
    Option("priority", Kind.INTEGER, "N", "election priority (default 0)"),
    Option(
        "recipe",
        Kind.TEXT,
        "native|curator|kazoo",
        "node layout: election_daemon's own, or Apache Curator's or kazoo's to share the path with "
        "their participants (no --data, no --priority) (default native)",
    ),
    Option(
        "clear-env",
        Kind.BOOL,
        "",
        "start COMMAND and hooks with only PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ, "
        "TMPDIR, the ELECTION_* term variables and --pass-env names of this environment",
    ),
    Option(
        "pass-env",
        Kind.NAMES,
        "NAME",
        "with --clear-env, also pass this variable (repeatable; in the environment: names "
        "separated by commas or spaces)",
    ),
    # Not a flag: the command comes after "--", so argparse never sees it.
    Option(COMMAND, Kind.WORDS, "", ""),
    # -- the subcommands' own: flags only ----------------------------------------------------
    Option("json", Kind.SWITCH, "", "print JSON", flag_only=True),
    Option("to", Kind.TEXT, "ID", "the participant (by identity) that should lead next", flag_only=True),
    Option("wait", Kind.SECONDS, "SECONDS", "how long to wait for the new leader (30)", flag_only=True),
    Option("listen", Kind.TEXT, "HOST:PORT", "address to serve on", flag_only=True),
    Option("allow-host", Kind.NAMES, "NAME", "a name the page may be reached by", flag_only=True),
    Option("ensemble", Kind.INTEGER, "N", "size of the local ensemble: 3 or 5 (default 3)", flag_only=True),
    Option("participants", Kind.INTEGER, "N", "daemons (default 3)", flag_only=True),
    Option("duration", Kind.SECONDS, "SECONDS", "soak: random faults for this long", flag_only=True),
    Option("faults", Kind.INTEGER, "N", "soak: this many random faults", flag_only=True),
    Option("quick", Kind.SWITCH, "", "CI: every fault once, T = 2 s, in under three minutes", flag_only=True),
    Option("faults-from", Kind.TEXT, "LIST", "comma-separated fault names to draw from", flag_only=True),
    Option("seed", Kind.INTEGER, "S", "seed of the fault schedule (default random)", flag_only=True),
    Option("report", Kind.TEXT, "DIR", "report directory (default verify-report)", flag_only=True),
    Option(
        "tls",
        Kind.SWITCH,
        "",
        "run the local ensemble over mutual TLS with digest authentication",
        flag_only=True,
    ),
)

CONNECTION_OPTIONS = (
    "hosts",
    "path",
    "session-timeout",
    "connect-timeout",
    "tls-ca",
    "tls-cert",
    "tls-key",
    "tls-no-verify-hostname",
    "auth-file",
)
"""What every command that connects to ZooKeeper as a client takes."""
_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Command:
    """A command's view of the table: the options it takes and the sources it reads."""

    prog: str
    description: str
    options: tuple[str, ...]
    """Names of :data:`OPTIONS` rows, in ``--help`` order."""
    help: Mapping[str, str] = field(default_factory=dict)
    """Help texts of this command for some options, by name."""
    exclusive: tuple[tuple[str, ...], ...] = ()
    required: tuple[str, ...] = ()
    environment: bool = True
    config_file: bool = False
    trailing_command: bool = False
    """Everything after ``--`` is the leader-only command; a stray word is an error saying so."""
    usage: str | None = None
    notes: Sequence[str] = ()
    """Lines put before the environment in ``--help``."""
    exit_codes: Sequence[ExitCode] | None = None
    """The codes this command can end with (every code, and the child-status note, if ``None``)."""
    exit_meanings: Mapping[ExitCode, str] = field(default_factory=dict)

    @property
    def rows(self) -> tuple[Option, ...]:
        return tuple(_BY_NAME[name] for name in self.options)

    def reads_environment(self, option: Option) -> bool:
        return self.environment and not option.flag_only

    def reads_file(self, option: Option) -> bool:
        return self.config_file and not option.flag_only


class OptionParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError("command line", message)


def build_parser(command: Command) -> OptionParser:
    """The parser of ``command``; its ``--help`` lists the variables and the exit codes.

    Parse errors raise :class:`ConfigError`; ``--help`` and ``--version`` print and raise
    ``SystemExit(0)`` as usual. Values from flags are text until :func:`load` converts them,
    except for flag-only options, converted here (``invalid int value: 'x'``).
    """
    parser = OptionParser(
        prog=command.prog,
        usage=command.usage,
        description=command.description,
        epilog=_epilog(command),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        exit_on_error=False,
    )
    if command.trailing_command:
        parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    if command.config_file:
        parser.add_argument("--config", metavar="FILE", help="TOML file giving any of the options below")
    groups: dict[str, Any] = {}
    for names in command.exclusive:
        group = parser.add_mutually_exclusive_group()
        for name in names:
            groups[name] = group
    for option in command.rows:
        if option.kind is Kind.WORDS:
            continue
        target: Any = groups.get(option.name, parser)
        help_text = command.help.get(option.name, option.help)
        if option.kind is Kind.BOOL:
            target.add_argument(
                option.label, dest=option.dest, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif option.kind is Kind.SWITCH:
            target.add_argument(option.label, dest=option.dest, action="store_true", help=help_text)
        elif option.kind is Kind.NAMES:
            target.add_argument(
                option.label, dest=option.dest, action="append", metavar=option.metavar, help=help_text
            )
        else:
            convert: Callable[[str], object] | None = None
            if option.flag_only:
                convert = {Kind.INTEGER: integer, Kind.SECONDS: decimal}.get(option.kind)
            target.add_argument(
                option.label, dest=option.dest, metavar=option.metavar, type=convert, help=help_text
            )
    return parser


def _epilog(command: Command) -> str:
    lines = list(command.notes)
    if command.config_file:
        lines += [
            "configuration:",
            "  Precedence: flag > environment > config file > default. Keys in the TOML file are",
            "  the option names (session-timeout or session_timeout); command is a list of strings.",
            "",
        ]
    variables = [option for option in command.rows if command.reads_environment(option)]
    if variables:
        width = max(len(option.env) for option in variables)
        listed = [f"  {CONFIG_ENV:<{width}}  --config"] if command.config_file else []
        for option in variables:
            meaning = "COMMAND, as shell words" if option.kind is Kind.WORDS else option.label
            if option.name in _ACL_OPTIONS:
                meaning += ", ids separated by ';'"
            elif option.kind is Kind.NAMES:
                meaning += ", names separated by commas or spaces"
            listed.append(f"  {option.env:<{width}}  {meaning}")
        lines += ["environment:", *listed]
        if any(option.kind is Kind.BOOL for option in variables):
            lines.append("  Booleans take 1, true, yes, 0, false or no; an empty variable counts as unset.")
        else:
            lines.append("  The options win; an empty variable counts as unset.")
        lines.append("")
    lines.append(render_exit_codes(command.exit_codes, command.exit_meanings))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Loading: flags, environment, TOML file


# A value as read from one source, with where it came from (None for a flag: the flag says it).
_Setting: TypeAlias = tuple[Any, str | None]


class Settings:
    """The values a command was given, by destination, each with where it came from."""

    def __init__(self, settings: Mapping[str, _Setting]) -> None:
        self._settings = dict(settings)

    def __contains__(self, dest: str) -> bool:
        return dest in self._settings

    def get(self, dest: str, default: Any = None) -> Any:
        return self._settings[dest][0] if dest in self._settings else default

    def values(self) -> dict[str, Any]:
        return {dest: value for dest, (value, _) in self._settings.items()}

    def origin(self, dest: str) -> str | None:
        """The variable or file key a value came from; ``None`` for a flag or a default."""
        return self._settings[dest][1] if dest in self._settings else None

    @contextlib.contextmanager
    def blame(self) -> Iterator[None]:
        """Add ``(from VARIABLE)`` or ``(from key 'x' in FILE)`` to a ConfigError about a value
        that came from there."""
        try:
            yield
        except ConfigError as exc:
            culprit = _BY_LABEL.get(exc.field)
            origin = self.origin(culprit.dest) if culprit is not None else None
            if origin is None:
                raise
            raise ConfigError(exc.field, f"{exc.message} (from {origin})") from exc


_BY_LABEL = {option.label: option for option in OPTIONS}


def load(command: Command, argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """The options of ``command`` from ``argv`` (without the program and subcommand names),
    ``environ`` and, if the command takes one, the config file; flag > environment > file.

    :raises ConfigError: for a bad flag, variable, file or value; the message is one line.
    :raises SystemExit: with status 0, after printing ``--help`` or ``--version``.
    """
    flag_args, words = _split_command(argv) if command.trailing_command else (list(argv), ())
    namespace = _parse_flags(command, flag_args)
    flag_settings: dict[str, _Setting] = {}
    for option in command.rows:
        value = getattr(namespace, option.dest, None)
        if value is None or (option.kind is Kind.SWITCH and not value):
            continue
        if option.kind is Kind.NAMES:
            value = tuple(value)
        elif not option.flag_only and option.kind not in (Kind.BOOL, Kind.SWITCH):
            value = _from_text(option, value, None)
        flag_settings[option.dest] = (value, None)
    if words:
        flag_settings[_BY_NAME[COMMAND].dest] = (words, None)
    env_settings = _environment_settings(command, environ) if command.environment else {}
    file_settings: dict[str, _Setting] = {}
    if command.config_file:
        config_file = namespace.config or environ.get(CONFIG_ENV)
        if config_file:
            file_settings = _file_settings(command, Path(config_file))
    settings = {**file_settings, **env_settings, **flag_settings}
    for name in command.required:
        option = _BY_NAME[name]
        if option.dest not in settings:
            sources = [f"give {option.label}"]
            if command.reads_environment(option):
                sources.append(f"set {option.env}")
            if command.reads_file(option):
                sources.append(f"put {option.name} in the config file")
            wanted = ", ".join(sources[:-1]) + f" or {sources[-1]}" if len(sources) > 1 else sources[0]
            raise ConfigError(option.label, f"is required: {wanted}")
    return Settings(settings)


def _split_command(argv: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    # Split before argparse sees anything: after "--", words that look like our flags belong to
    # the command (``-- sh -c 'x' --help``).
    if "--" not in argv:
        return list(argv), ()
    cut = list(argv).index("--")
    return list(argv[:cut]), tuple(argv[cut + 1 :])


def _parse_flags(command: Command, args: list[str]) -> argparse.Namespace:
    parser = build_parser(command)
    try:
        namespace, extras = parser.parse_known_args(args)
    except argparse.ArgumentError as exc:
        # argument_name is "--exit-on-loss/--no-exit-on-loss" for a boolean option: keep the first.
        field_name = (exc.argument_name or "command line").partition("/")[0]
        raise ConfigError(field_name, exc.message) from None
    if extras:
        if not command.trailing_command:
            # What argparse itself says; the daemon, which takes a command, says more below.
            raise ConfigError("command line", f"unrecognized arguments: {' '.join(extras)}")
        first = extras[0].partition("=")[0]
        if first.startswith("-"):
            flags = [option.label for option in command.rows if option.kind is not Kind.WORDS]
            raise ConfigError(first, f"unknown option{_suggest(first, flags)}")
        raise ConfigError(COMMAND, f"unexpected argument {show(first)}; put the command after '--'")
    return namespace


def _environment_settings(command: Command, environ: Mapping[str, str]) -> dict[str, _Setting]:
    settings: dict[str, _Setting] = {}
    known = {option.env: option for option in command.rows if command.reads_environment(option)}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        option = known.get(name)
        if option is None:
            # A subcommand often runs in a daemon's environment: only the daemon, which reads
            # them all, refuses a variable it does not know (a typo).
            if command.config_file:
                raise ConfigError(name, f"unknown variable{_suggest(name, [*known, CONFIG_ENV])}")
            continue
        # Unit files and container specs often set a variable to "" to mean "not set".
        if text:
            settings[option.dest] = (_from_text(option, text, name), name)
    return settings


def _file_settings(command: Command, path: Path) -> dict[str, _Setting]:
    document = _read_toml(path)
    options = {option.name: option for option in command.rows if command.reads_file(option)}
    settings: dict[str, _Setting] = {}
    keys: dict[str, str] = {}
    for key, value in _acl_table(document, path).items():
        name = key.replace("_", "-")
        option = options.get(name)
        if option is None:
            raise ConfigError("--config", f"unknown key {show(key)} in {path}{_suggest(name, list(options))}")
        if name in keys:
            raise ConfigError(
                "--config", f"keys {show(keys[name])} and {show(key)} in {path} set the same option"
            )
        keys[name] = key
        where = f"key {show(key)} in {path}"
        settings[option.dest] = (_from_toml(option, value, where), where)
    return settings


_ACL_OPTIONS = {"acl-participant": "participants", "acl-operator": "operators", "acl-reader": "readers"}


def _acl_table(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """The document with its ``[acl]`` table (participants, operators, readers) as the
    ``acl-participant``, ``acl-operator`` and ``acl-reader`` keys."""
    table = document.get("acl")
    if table is None:
        return document
    if not isinstance(table, dict):
        raise ConfigError(
            "--config", f"'acl' in {path} must be a table with participants, operators, readers"
        )
    flat = {k: v for k, v in document.items() if k != "acl"}
    keys = {v: k for k, v in _ACL_OPTIONS.items()}
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(
                "--config", f"unknown key {show(key)} in [acl] of {path}{_suggest(key, list(keys))}"
            )
        flat[keys[key]] = value
    return flat


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = _read_regular_file(path).decode("utf-8")
        return tomllib.loads(text)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"invalid TOML in {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", f"{path} is not UTF-8 (byte {exc.start})") from None


def _read_regular_file(path: Path) -> bytes:
    """The file's bytes, if it is a regular file of sensible size.

    Opened without blocking and checked on the open descriptor: a FIFO would block a plain
    open (and its reader) for ever, /dev/zero never ends, a directory is no file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ConfigError("--config", f"cannot read {path}: {kind}")
        if info.st_size > MAX_CONFIG_FILE_BYTES:
            raise ConfigError(
                "--config", f"{path} is {info.st_size} bytes, more than {MAX_CONFIG_FILE_BYTES}"
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_CONFIG_FILE_BYTES:
                raise ConfigError("--config", f"{path} is more than {MAX_CONFIG_FILE_BYTES} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _from_text(option: Option, text: str, origin: str | None) -> object:
    try:
        if option.kind is Kind.SECONDS:
            return decimal(text)
        if option.kind is Kind.INTEGER:
            return integer(text)
        if option.kind is Kind.NAMES:
            return _names(option, text)
        if option.kind in (Kind.BOOL, Kind.SWITCH):
            return _parse_bool(text)
        if option.kind is Kind.WORDS:
            return tuple(shlex.split(text))
    except ValueError:
        source = "" if origin is None else f"{origin} "
        raise ConfigError(
            option.label, f"{source}{_TEXT_EXPECTATIONS[option.kind]}, got {show(text)}"
        ) from None
    return text


def _names(option: Option, text: str) -> tuple[str, ...]:
    if option.name in _ACL_OPTIONS:
        # An x509 subject holds commas and spaces.
        return tuple(word.strip() for word in text.split(";") if word.strip())
    return tuple(text.replace(",", " ").split())


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(text)


def _from_toml(option: Option, value: object, where: str) -> object:
    kind = option.kind
    if kind in (Kind.WORDS, Kind.NAMES):
        if isinstance(value, list) and all(isinstance(word, str) for word in value):
            return tuple(value)
    elif kind is Kind.SECONDS:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is Kind.INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind in (Kind.BOOL, Kind.SWITCH):
        if isinstance(value, bool):
            return value
    elif isinstance(value, str):
        return value
    raise ConfigError(option.label, f"{where} must be {_TOML_EXPECTATIONS[kind]}, got {show(value)}")


def _suggest(word: str, candidates: Sequence[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""


# ---------------------------------------------------------------------------------------------
# Exceptions to exit codes: the one mapping of every command


class OperationError(ElectionError):
    """An operator command could not do what was asked (exit code 8)."""


_log = logging.getLogger("election_daemon.cli")


def _log_bug(exc: BaseException) -> str:
    _log.error("internal_error: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return "the traceback is above"


def exit_code_for(exc: BaseException, *, on_bug: Callable[[BaseException], str] | None = None) -> int:
    """Say what went wrong in one line on stderr (nothing for a clean stop) and return its code.

    ``ConfigError`` 2, ``ConnectTimeoutError`` 3, ``TLSError`` 10, any other refusal or failure
    of ZooKeeper 4 (``AuthFailedError`` included),
    ``ChildError`` 5, ``OperationError`` 8, ``InternalError`` 9; Ctrl-C (and a reader gone
    from a pipe) is a clean stop, 0; ``--help`` and ``--version`` end with their own status.
    Anything else is a bug: ``on_bug(exc)`` records the traceback (called inside the ``except``
    block) and says where; exit code 1.
    """
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else ExitCode.FAILURE
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.OK
    if isinstance(exc, BrokenPipeError):
        # The reader went away (``watch | head -1``): done. Keep the final flush quiet too.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    for kind, code, prefix in _EXIT_CODES:
        if isinstance(exc, kind):
            error(f"{prefix}{exc}")
            return code
    where = (on_bug or _log_bug)(exc)
    error(f"internal error: {type(exc).__name__}: {exc} (a bug; {where})")
    return ExitCode.FAILURE


# In order: the first class that matches gives the code (ConnectTimeoutError before ZooKeeperError).
_EXIT_CODES: tuple[tuple[type[Exception], ExitCode, str], ...] = (
    (ConfigError, ExitCode.USAGE, ""),
    (ConnectTimeoutError, ExitCode.ZK_UNREACHABLE, ""),
    (TLSError, ExitCode.TLS_FAILED, ""),
    (ZooKeeperError, ExitCode.ZK_REFUSED, "ZooKeeper refused: "),
    (ChildError, ExitCode.COMMAND_FAILED, ""),
    (OperationError, ExitCode.OPERATION_FAILED, ""),
    (InternalError, ExitCode.ELECTION_FAILED, ""),
)


def guarded(body: Callable[[], int], *, on_bug: Callable[[BaseException], str] | None = None) -> int:
    """``body()``, or the exit code of what it raised (see :func:`exit_code_for`)."""
    try:
        return body()
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        return exit_code_for(exc, on_bug=on_bug)
