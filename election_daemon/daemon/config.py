"""The daemon's configuration: command-line flags, environment, TOML file, validated at construction.

Precedence is flag > environment > config file > default. Every option ``--some-name`` can also
be given as ``ELECTION_DAEMON_SOME_NAME`` in the environment, or as ``some-name`` (or
``some_name``) in the TOML file named by ``--config`` or ``ELECTION_DAEMON_CONFIG``. The
leader-only command comes after ``--`` on the command line, from ``ELECTION_DAEMON_COMMAND``
(shell words), or from the file's ``command`` list. Errors are :class:`ConfigError` whose
``field`` is the option's flag (``"--session-timeout"``) and whose message is one line.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import importlib.metadata
import os
import re
import shlex
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeAlias, TypeVar

from election_daemon.daemon.exitcodes import render_exit_codes
from election_daemon.errors import ConfigError
from election_daemon.library import payload
from election_daemon.library.limits import (
    CONNECT_TIMEOUT_RANGE_S,
    SESSION_TIMEOUT_RANGE_S,
    check_identity,
    check_priority,
    check_seconds,
    choice,
    default_identity,
    parse_host_port,
    parse_hosts,
    show,
    validate_election_path,
)
from election_daemon.library.recipes import Recipe, our_recipe

__all__ = [
    "ESSENTIAL_ENV",
    "MAX_DATA_BYTES",
    "ChildExitPolicy",
    "DaemonConfig",
    "JSONValue",
    "LogFormat",
    "build_daemon_parser",
    "child_base_environment",
    "load_daemon_config",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

MAX_DATA_BYTES = payload.MAX_DATA_BYTES
"""Largest ``--data`` accepted, in bytes of its compact JSON encoding (``payload.MAX_DATA_BYTES``)."""

MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024
"""Largest config file read; it may carry ``data`` up to ``MAX_DATA_BYTES``."""

ESSENTIAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
"""What the command and hooks keep of the daemon's environment with ``--clear-env`` (with
every ``LC_*``), besides the ``ELECTION_*`` variables of the term and ``--pass-env`` names."""

_KILL_GRACE_RANGE_S = (0.001, 3600.0)
_HOOK_TIMEOUT_RANGE_S = (0.1, 3600.0)

# Numbers as people type them, ASCII only: int() and float() also take other scripts' digits
# ('٣'), underscores ('1_0') and words ('nan', 'infinity').
_INTEGER = re.compile(r"[ \t]*[+-]?[0-9]+[ \t]*")
_DECIMAL = re.compile(r"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_E = TypeVar("_E", bound=enum.StrEnum)


class ChildExitPolicy(enum.StrEnum):
    """What the daemon does when the leader-only command exits while it leads."""

    EXIT = "exit"
    """Release leadership and exit with the command's own status (128+N for signal N)."""

    REJOIN = "rejoin"
    """Release leadership and rejoin the election as a follower."""


class LogFormat(enum.StrEnum):
    """How log lines are written to stdout."""

    JSON = "json"
    """One JSON object per line, for journald and log shippers."""

    CONSOLE = "console"
    """Human-readable lines, for a terminal."""


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    """Everything the daemon needs to run, validated at construction.

    Fields after ``priority`` are derived from the others in ``__post_init__``.

    :raises ConfigError: with ``field`` set to the option's flag (``"--path"``), or
        ``"command"`` for the leader-only command.
    """

    hosts: str
    """ZooKeeper connect string ``host:port,host:port[/chroot]``; IPv6 as ``[::1]:2181``;
    the port defaults to 2181."""

    path: str
    """Election path: absolute, no trailing slash, not under ``/zookeeper``."""

    command: tuple[str, ...] = ()
    """The leader-only command and its arguments; empty runs no command (hooks only)."""

    session_timeout_s: float = 10.0
    """Session timeout requested from ZooKeeper; the server may clamp it into its own range."""

    connect_timeout_s: float = 30.0
    """How long to wait for any ZooKeeper server to answer before giving up (exit code 3)."""

    identity: str = field(default_factory=default_identity)
    """This contender's name as others see it; defaults to ``hostname:pid``."""

    data_json: str | None = None
    """JSON text published with this contender's node (``--data``), parsed into ``data``."""

    kill_grace_override_s: float | None = None
    """Seconds between SIGTERM and SIGKILL when stopping the command; ``None`` derives
    ``kill_grace_s`` from the session timeout. Raise it only for commands that need longer
    to stop, knowing that they may then outlive leadership (see ``warnings``)."""

    on_child_exit: ChildExitPolicy = ChildExitPolicy.EXIT
    """What to do when the command exits while leading."""

    exit_on_loss: bool = False
    """Exit with code 6 when leadership ends instead of rejoining the election."""

    log_format: LogFormat | None = None
    """Log format; ``None`` means JSON when stdout is not a TTY, console otherwise."""

    on_elected: str | None = None
    """Shell command run when leadership starts."""

    on_revoked: str | None = None
    """Shell command run when leadership ends."""

    hook_timeout_s: float = 10.0
    """How long a hook command may run before it is killed."""

    http: str | None = None
    """``HOST:PORT`` to serve the HTTP endpoints on; port 0 picks a free port."""

    priority: int = 0
    """Election priority."""

    recipe: Recipe = Recipe.NATIVE
    """The node layout; ``curator`` and ``kazoo`` store only the identity, so they take neither
    ``data_json`` nor a priority."""

    clear_env: bool = False
    """Start the command and hooks with only :data:`ESSENTIAL_ENV` (and ``LC_*``), the term's
    ``ELECTION_*`` variables and ``pass_env`` of the daemon's environment."""

    pass_env: tuple[str, ...] = ()
    """Names of the daemon's variables the command and hooks keep with ``clear_env``."""

    servers: tuple[tuple[str, int], ...] = field(init=False)
    """``hosts`` parsed: (host, port) pairs, IPv6 hosts without brackets."""

    chroot: str | None = field(init=False)
    """The chroot suffix of ``hosts``, or ``None``."""

    data: JSONValue = field(init=False, repr=False)
    """``data_json`` parsed; ``None`` both without data and for JSON ``null`` (see ``data_bytes``)."""

    data_bytes: bytes | None = field(init=False, repr=False)
    """``data`` as compact UTF-8 JSON; ``None`` without data."""

    kill_grace_s: float = field(init=False)
    """The effective kill grace: the override, or ``session_timeout_s / 6`` so that stopping
    the command fits inside the T/3 margin between losing the lease and the session's expiry."""

    http_address: tuple[str, int] | None = field(init=False)
    """``http`` parsed as (host, port), or ``None``."""

    warnings: tuple[str, ...] = field(init=False)
    """Accepted but risky settings, one line each, for the daemon to log at startup."""

    def __post_init__(self) -> None:
        warnings: list[str] = []
        servers, chroot = parse_hosts(self.hosts, "--hosts")
        validate_election_path(self.path, "--path")
        check_seconds("--session-timeout", self.session_timeout_s, SESSION_TIMEOUT_RANGE_S)
        check_seconds("--connect-timeout", self.connect_timeout_s, CONNECT_TIMEOUT_RANGE_S)
        check_identity(self.identity, "--id")
        data, data_bytes = (None, None) if self.data_json is None else _parse_data(self.data_json)
        if self.kill_grace_override_s is None:
            kill_grace_s = self.session_timeout_s / 6
        else:
            kill_grace_s = check_seconds("--kill-grace", self.kill_grace_override_s, _KILL_GRACE_RANGE_S)
            if kill_grace_s > self.session_timeout_s / 4:
                warnings.append(
                    f"--kill-grace {kill_grace_s:g} s is more than a quarter of --session-timeout "
                    f"{self.session_timeout_s:g} s: a command slow to stop may still run when "
                    "another contender is elected"
                )
        _check_shell_command("--on-elected", self.on_elected)
        _check_shell_command("--on-revoked", self.on_revoked)
        check_seconds("--hook-timeout", self.hook_timeout_s, _HOOK_TIMEOUT_RANGE_S)
        _check_command(self.command)
        http_address = None if self.http is None else _parse_http(self.http)
        check_priority(self.priority, "--priority")
        recipe = our_recipe(self.recipe, "--recipe")
        if recipe is not Recipe.NATIVE:
            foreign = f"is not supported with --recipe {recipe.value}, whose nodes hold only the identity"
            if self.data_json is not None:
                raise ConfigError("--data", foreign)
            if self.priority != 0:
                raise ConfigError("--priority", f"{foreign} (priorities are election_daemon's own)")
        pass_env = _check_pass_env(self.pass_env)
        if pass_env and not self.clear_env:
            warnings.append("--pass-env has no effect without --clear-env: the command inherits everything")
        resolved: dict[str, object] = {
            "recipe": recipe,
            "pass_env": pass_env,
            "on_child_exit": choice("--on-child-exit", ChildExitPolicy, self.on_child_exit),
            "log_format": None
            if self.log_format is None
            else choice("--log-format", LogFormat, self.log_format),
            "servers": servers,
            "chroot": chroot,
            "data": data,
            "data_bytes": data_bytes,
            "kill_grace_s": kill_grace_s,
            "http_address": http_address,
            "warnings": tuple(warnings),
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def child_environment(self, environ: Mapping[str, str]) -> dict[str, str] | None:
        """What the command and hooks start from, before the term's ``ELECTION_*`` variables:
        ``None`` (all of ``environ``, as it is then) unless ``clear_env``."""
        if not self.clear_env:
            return None
        return child_base_environment(environ, self.pass_env)


def child_base_environment(environ: Mapping[str, str], pass_env: Sequence[str] = ()) -> dict[str, str]:
    """``environ`` cut down to :data:`ESSENTIAL_ENV`, ``LC_*`` and the ``pass_env`` names."""
    keep = {*ESSENTIAL_ENV, *pass_env}
    return {name: value for name, value in environ.items() if name in keep or name.startswith("LC_")}


def _check_pass_env(names: object) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, tuple | list):
        raise ConfigError("--pass-env", f"must be variable names, got {show(names)}")
    for name in names:
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ConfigError("--pass-env", f"must be a variable name (letters, digits, _), got {show(name)}")
    return tuple(dict.fromkeys(names))


def _check_shell_command(flag: str, command: str | None) -> None:
    if command is None:
        return
    if not command.strip():
        raise ConfigError(flag, f"must not be blank, got {show(command)}")
    if "\0" in command:
        raise ConfigError(flag, f"must not contain NUL, got {show(command)}")


def _check_command(command: tuple[str, ...]) -> None:
    if command and not command[0]:
        raise ConfigError("command", "the program name must not be empty")
    for argument in command:
        if "\0" in argument:
            raise ConfigError("command", f"arguments must not contain NUL, got {show(argument)}")


def _parse_http(address: str) -> tuple[str, int]:
    try:
        return parse_host_port(address, default_port=None, min_port=0)
    except ValueError as exc:
        raise ConfigError("--http", f"{exc}; expected HOST:PORT") from None


def _parse_data(text: str) -> tuple[JSONValue, bytes]:
    # The very decoder every reader of our node uses (strict numbers, bounded depth), so that we
    # never publish what others refuse. The text may be pretty-printed: its size limit is looser
    # than the one on the compact encoding checked below.
    try:
        value = payload.loads(text, max_bytes=4 * MAX_DATA_BYTES)
        encoded = payload.dumps(value).encode()
    except (ValueError, RecursionError) as exc:
        # PayloadError, and UnicodeEncodeError (undecodable bytes from argv), are ValueErrors.
        reason = str(exc)
        if reason.startswith("not valid JSON (") and reason.endswith(")"):
            reason = reason[len("not valid JSON (") : -1]
        raise ConfigError("--data", f"must be valid JSON ({reason}), got {show(text)}") from None
    if len(encoded) > MAX_DATA_BYTES:
        raise ConfigError(
            "--data",
            f"is {len(encoded)} bytes as compact JSON, more than the limit of {MAX_DATA_BYTES} "
            "(ZooKeeper's jute.maxbuffer is just under 1 MiB)",
        )
    return value, encoded


# ---------------------------------------------------------------------------------------------
# Loading: flags, environment, TOML file.

_ENV_PREFIX = "ELECTION_DAEMON_"
_CONFIG_ENV = "ELECTION_DAEMON_CONFIG"
_COMMAND = "command"


@dataclass(frozen=True)
class _Option:
    """One setting as it appears on the command line, in the environment and in the file."""

    name: str
    """The flag without its dashes, and the TOML key."""
    field: str
    """The DaemonConfig field it sets."""
    kind: type
    """str, float (seconds), int, bool, list (names), or tuple (the command)."""
    metavar: str
    help: str

    @property
    def label(self) -> str:
        """The name errors use: the flag, or ``command``."""
        return self.name if self.name == _COMMAND else f"--{self.name}"

    @property
    def env(self) -> str:
        return _ENV_PREFIX + self.name.upper().replace("-", "_")


_OPTIONS = (
    _Option(
        "hosts",
        "hosts",
        str,
        "HOSTS",
        "ZooKeeper connect string host:port[,host:port...][/chroot]; IPv6 as [::1]:2181; "
        "the port defaults to 2181 (required)",
    ),
    _Option("path", "path", str, "PATH", "election path, e.g. /services/billing/leader (required)"),
    _Option(
        "session-timeout",
        "session_timeout_s",
        float,
        "SECONDS",
        "ZooKeeper session timeout to request; the server may clamp it (default 10)",
    ),
    _Option(
        "connect-timeout",
        "connect_timeout_s",
        float,
        "SECONDS",
        "exit with code 3 if no ZooKeeper server answers within this (default 30)",
    ),
    _Option("id", "identity", str, "ID", "this contender's identity as others see it (default HOSTNAME:PID)"),
    _Option(
        "data",
        "data_json",
        str,
        "JSON",
        f"JSON published with this contender's node (at most {MAX_DATA_BYTES // 1024} KiB)",
    ),
    _Option(
        "kill-grace",
        "kill_grace_override_s",
        float,
        "SECONDS",
        "time between SIGTERM and SIGKILL when stopping COMMAND (default session timeout / 6)",
    ),
    _Option(
        "on-child-exit",
        "on_child_exit",
        str,
        "exit|rejoin",
        "when COMMAND exits while leading: exit with its status, or rejoin the election (default exit)",
    ),
    _Option(
        "exit-on-loss",
        "exit_on_loss",
        bool,
        "",
        "exit with code 6 when leadership ends instead of rejoining the election",
    ),
    _Option(
        "log-format",
        "log_format",
        str,
        "json|console",
        "log format (default json when stdout is not a terminal, console otherwise)",
    ),
    _Option("on-elected", "on_elected", str, "CMD", "shell command to run when leadership starts"),
    _Option("on-revoked", "on_revoked", str, "CMD", "shell command to run when leadership ends"),
    _Option(
        "hook-timeout",
        "hook_timeout_s",
        float,
        "SECONDS",
        "kill a hook command still running after this (default 10)",
    ),
    _Option(
        "http", "http", str, "HOST:PORT", "serve the HTTP endpoints on this address (port 0: any free port)"
    ),
    _Option("priority", "priority", int, "N", "election priority (default 0)"),
    _Option(
        "recipe",
        "recipe",
        str,
        "native|curator|kazoo",
        "node layout: election_daemon's own, or Apache Curator's or kazoo's to share the path with "
        "their participants (no --data, no --priority) (default native)",
    ),
    _Option(
        "clear-env",
        "clear_env",
        bool,
        "",
        "start COMMAND and hooks with only PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ, "
        "TMPDIR, the ELECTION_* term variables and --pass-env names of this environment",
    ),
    _Option(
        "pass-env",
        "pass_env",
        list,
        "NAME",
        "with --clear-env, also pass this variable (repeatable; in the environment: names "
        "separated by commas or spaces)",
    ),
    # Not a flag: the command comes after "--", so argparse never sees it.
    _Option(_COMMAND, "command", tuple, "", ""),
)
_OPTIONS_BY_NAME = {option.name: option for option in _OPTIONS}
_OPTIONS_BY_ENV = {option.env: option for option in _OPTIONS}
_OPTIONS_BY_LABEL = {option.label: option for option in _OPTIONS}

_TRUE_WORDS = frozenset({"1", "true", "yes"})
_FALSE_WORDS = frozenset({"0", "false", "no"})
_TEXT_EXPECTATIONS = {
    float: "must be a number of seconds",
    int: "must be an integer",
    bool: "must be one of 1, true, yes, 0, false, no",
    tuple: "must be shell words",
    list: "must be names",
}
_TOML_EXPECTATIONS = {
    str: "a string",
    float: "a number of seconds",
    int: "an integer",
    bool: "a boolean",
    tuple: "a list of strings",
    list: "a list of strings",
}

# A value as read from one source, with where it came from (None for a flag: the flag says it).
_Setting: TypeAlias = tuple[Any, str | None]


class _DaemonArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError("command line", message)


def build_daemon_parser() -> argparse.ArgumentParser:
    """Return the daemon's argument parser; its ``--help`` lists the environment and exit codes.

    Parse errors raise :class:`ConfigError` instead of printing usage; ``--help`` and ``--version``
    print and raise ``SystemExit(0)`` as usual. The command after ``--`` is not the parser's:
    :func:`load_daemon_config` splits it off first.
    """
    parser = _DaemonArgumentParser(
        prog="election-daemon",
        usage="%(prog)s [OPTIONS] [-- COMMAND [ARGS...]]\n       %(prog)s SUBCOMMAND --help",
        description=(
            "Run COMMAND only while this process is the leader elected at PATH on ZooKeeper,\n"
            "and stop it when leadership ends.\n\n"
            "subcommands: status, watch, step-down, dashboard, verify (each has --help)"
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        exit_on_error=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--config", metavar="FILE", help="TOML file giving any of the options below")
    for option in _OPTIONS:
        if option.kind is bool:
            parser.add_argument(
                option.label, dest=option.field, action=argparse.BooleanOptionalAction, help=option.help
            )
        elif option.kind is list:
            parser.add_argument(
                option.label, dest=option.field, action="append", metavar=option.metavar, help=option.help
            )
        elif option.kind is not tuple:
            parser.add_argument(option.label, dest=option.field, metavar=option.metavar, help=option.help)
    return parser


def load_daemon_config(argv: Sequence[str], environ: Mapping[str, str]) -> DaemonConfig:
    """Build the configuration from ``argv`` (without the program name) and ``environ``.

    Precedence is flag > environment > config file > default; everything after the first
    ``--`` in ``argv`` is the leader-only command.

    :raises ConfigError: for a bad flag, variable, file or value; the message is one line.
    :raises SystemExit: with status 0, after printing ``--help`` or ``--version``.
    """
    flag_args, command = _split_command(argv)
    namespace = _parse_flags(flag_args)
    flag_settings: dict[str, _Setting] = {}
    for option in _OPTIONS:
        value = getattr(namespace, option.field, None)
        if value is not None:
            setting: object
            if option.kind is bool:
                setting = value
            elif option.kind is list:
                setting = tuple(value)
            else:
                setting = _from_text(option, value, None)
            flag_settings[option.field] = (setting, None)
    if command:
        flag_settings["command"] = (command, None)
    env_settings = _environment_settings(environ)
    config_file = namespace.config or environ.get(_CONFIG_ENV)
    file_settings = _file_settings(Path(config_file)) if config_file else {}
    settings = {**file_settings, **env_settings, **flag_settings}
    for option in (_OPTIONS_BY_NAME["hosts"], _OPTIONS_BY_NAME["path"]):
        if option.field not in settings:
            raise ConfigError(
                option.label,
                f"is required: give {option.label}, set {option.env} or put {option.name} in the config file",
            )
    try:
        return DaemonConfig(**{name: value for name, (value, _) in settings.items()})
    except ConfigError as exc:
        culprit = _OPTIONS_BY_LABEL.get(exc.field)
        origin = settings[culprit.field][1] if culprit is not None and culprit.field in settings else None
        if origin is None:
            raise
        raise ConfigError(exc.field, f"{exc.message} (from {origin})") from exc


def _split_command(argv: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    # Split before argparse sees anything: after "--", words that look like our flags belong to
    # the command (``-- sh -c 'x' --help``).
    if "--" not in argv:
        return list(argv), ()
    cut = list(argv).index("--")
    return list(argv[:cut]), tuple(argv[cut + 1 :])


def _parse_flags(args: list[str]) -> argparse.Namespace:
    try:
        namespace, extras = build_daemon_parser().parse_known_args(args)
    except argparse.ArgumentError as exc:
        # argument_name is "--exit-on-loss/--no-exit-on-loss" for a boolean option: keep the first.
        field_name = (exc.argument_name or "command line").partition("/")[0]
        raise ConfigError(field_name, exc.message) from None
    if extras:
        first = extras[0].partition("=")[0]
        if first.startswith("-"):
            flags = [option.label for option in _OPTIONS if option.kind is not tuple]
            raise ConfigError(first, f"unknown option{_suggest(first, flags)}")
        raise ConfigError(_COMMAND, f"unexpected argument {show(first)}; put the command after '--'")
    return namespace


def _environment_settings(environ: Mapping[str, str]) -> dict[str, _Setting]:
    settings: dict[str, _Setting] = {}
    for name, text in environ.items():
        if not name.startswith(_ENV_PREFIX) or name == _CONFIG_ENV:
            continue
        option = _OPTIONS_BY_ENV.get(name)
        if option is None:
            raise ConfigError(name, f"unknown variable{_suggest(name, [*_OPTIONS_BY_ENV, _CONFIG_ENV])}")
        # Unit files and container specs often set a variable to "" to mean "not set".
        if text:
            settings[option.field] = (_from_text(option, text, name), name)
    return settings


def _file_settings(path: Path) -> dict[str, _Setting]:
    document = _read_toml(path)
    settings: dict[str, _Setting] = {}
    keys: dict[str, str] = {}
    for key, value in document.items():
        name = key.replace("_", "-")
        option = _OPTIONS_BY_NAME.get(name)
        if option is None:
            raise ConfigError(
                "--config", f"unknown key {show(key)} in {path}{_suggest(name, list(_OPTIONS_BY_NAME))}"
            )
        if name in keys:
            raise ConfigError(
                "--config", f"keys {show(keys[name])} and {show(key)} in {path} set the same option"
            )
        keys[name] = key
        where = f"key {show(key)} in {path}"
        settings[option.field] = (_from_toml(option, value, where), where)
    return settings


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


def _from_text(option: _Option, text: str, origin: str | None) -> object:
    try:
        if option.kind is float:
            if not _DECIMAL.fullmatch(text):
                raise ValueError(text)
            return float(text)
        if option.kind is int:
            if not _INTEGER.fullmatch(text):
                raise ValueError(text)
            return int(text)
        if option.kind is list:
            return tuple(text.replace(",", " ").split())
        if option.kind is bool:
            return _parse_bool(text)
        if option.kind is tuple:
            return tuple(shlex.split(text))
    except ValueError:
        source = "" if origin is None else f"{origin} "
        raise ConfigError(
            option.label, f"{source}{_TEXT_EXPECTATIONS[option.kind]}, got {show(text)}"
        ) from None
    return text


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(text)


def _from_toml(option: _Option, value: object, where: str) -> object:
    kind = option.kind
    if kind is tuple or kind is list:
        if isinstance(value, list) and all(isinstance(word, str) for word in value):
            return tuple(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, kind):
        return value
    raise ConfigError(option.label, f"{where} must be {_TOML_EXPECTATIONS[kind]}, got {show(value)}")


def _suggest(word: str, candidates: Sequence[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {matches[0]}?)" if matches else ""


def _epilog() -> str:
    width = max(len(option.env) for option in _OPTIONS)
    variables = [f"  {_CONFIG_ENV:<{width}}  --config"]
    for option in _OPTIONS:
        meaning = "COMMAND, as shell words" if option.kind is tuple else option.label
        if option.kind is list:
            meaning += ", names separated by commas or spaces"
        variables.append(f"  {option.env:<{width}}  {meaning}")
    return "\n".join(
        [
            "configuration:",
            "  Precedence: flag > environment > config file > default. Keys in the TOML file are",
            "  the option names (session-timeout or session_timeout); command is a list of strings.",
            "",
            "environment:",
            *variables,
            "  Booleans take 1, true, yes, 0, false or no; an empty variable counts as unset.",
            "",
            render_exit_codes(),
        ]
    )


def _version() -> str:
    try:
        return importlib.metadata.version("election-daemon")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"
