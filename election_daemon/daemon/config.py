"""The daemon's configuration: parsed values, validated at construction.

The command line (:mod:`election_daemon.cli.options`) reads flags, the environment and the TOML
file and turns their text into these values; this module holds them and checks them with the
rules of :mod:`election_daemon.library.limits` and :mod:`election_daemon.library.payload`.
Errors are :class:`ConfigError` whose ``field`` is the option's flag (``"--session-timeout"``)
and whose message is one line.
"""

from __future__ import annotations

import enum
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from election_daemon.daemon.childoutput import ChildOutput
from election_daemon.errors import ConfigError
from election_daemon.library import payload
from election_daemon.library.acl import ElectionACL, check_acl
from election_daemon.library.limits import (
    CONNECT_TIMEOUT_RANGE_S,
    SESSION_TIMEOUT_RANGE_S,
    check_identity,
    check_priority,
    check_seconds,
    choice,
    default_identity,
    parse_hosts,
    show,
    validate_election_path,
)
from election_daemon.library.recipes import Recipe, our_recipe
from election_daemon.library.security import DigestAuth, check_tls, read_auth_file

__all__ = [
    "ESSENTIAL_ENV",
    "MAX_DATA_BYTES",
    "ChildExitPolicy",
    "ChildOutput",
    "DaemonConfig",
    "JSONValue",
    "LogFormat",
    "child_base_environment",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

MAX_DATA_BYTES = payload.MAX_DATA_BYTES
"""Largest ``--data`` accepted, in bytes of its compact JSON encoding (``payload.MAX_DATA_BYTES``)."""

ESSENTIAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
"""What the command and hooks keep of the daemon's environment with ``--clear-env`` (with
every ``LC_*``), besides the ``ELECTION_*`` variables of the term and ``--pass-env`` names."""

_KILL_GRACE_RANGE_S = (0.001, 3600.0)
_HOOK_TIMEOUT_RANGE_S = (0.1, 3600.0)
_TRY_RANGE_S = (0.001, 604800.0)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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

    tls_ca: str | None = None
    """PEM bundle of the CAs trusted to sign ZooKeeper's certificates; TLS is on with it (or
    with ``tls_cert``)."""

    tls_cert: str | None = None
    """Our client certificate (PEM), for mutual TLS."""

    tls_key: str | None = None
    """The private key of ``tls_cert`` (unencrypted PEM), if not in its file."""

    tls_verify_hostname: bool = True
    """Check that the server's certificate names the host dialled; off only with a warning."""

    auth_file: str | None = None
    """File holding ``digest user:password``, readable by its owner only (mode 0600 or less)."""

    acl_participants: tuple[str, ...] = ()
    """With ACLs: ids that may join the election (``--acl-participant``)."""

    acl_operators: tuple[str, ...] = ()
    """With ACLs: ids that may ask for a step-down or a handover (``--acl-operator``)."""

    acl_readers: tuple[str, ...] = ()
    """With ACLs: ids that may read the election (``--acl-reader``)."""

    identity: str = field(default_factory=default_identity)
    """This contender's name as others see it; defaults to ``hostname:pid``."""

    data: JSONValue = None
    """The JSON value published with this contender's node (``--data``); ``None`` publishes none.
    Held to what every reader accepts (:mod:`election_daemon.library.payload`)."""

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
    """Shell command run when leadership ends, once the command's process group is gone."""

    on_change: str | None = None
    """Shell command run for every transition of the election (suspension included), after
    ``on_elected`` or ``on_revoked``."""

    child_output: ChildOutput | None = None
    """Where the command's stdout and stderr go; ``None`` means ``log`` with JSON logs and
    ``inherit`` with console logs (see :meth:`child_output_for`)."""

    try_s: float | None = None
    """Exit with code 11 (``NOT_ELECTED``), without running the command, if not elected within
    this many seconds of starting (``--try``); ``None`` waits for ever."""

    once: bool = False
    """Run the command once as leader, then resign and exit with its status; any end of
    leadership before it exits ends the daemon too (code 6)."""

    hook_timeout_s: float = 10.0
    """How long a hook command may run before it is killed."""

    http_address: tuple[str, int] | None = None
    """(host, port) to serve the HTTP endpoints on (``--http``); port 0 picks a free port."""

    priority: int = 0
    """Election priority."""

    recipe: Recipe = Recipe.NATIVE
    """The node layout; ``curator`` and ``kazoo`` store only the identity, so they take neither
    ``data`` nor a priority."""

    clear_env: bool = False
    """Start the command and hooks with only :data:`ESSENTIAL_ENV` (and ``LC_*``), the term's
    ``ELECTION_*`` variables and ``pass_env`` of the daemon's environment."""

    pass_env: tuple[str, ...] = ()
    """Names of the daemon's variables the command and hooks keep with ``clear_env``."""

    servers: tuple[tuple[str, int], ...] = field(init=False)
    """``hosts`` parsed: (host, port) pairs, IPv6 hosts without brackets."""

    chroot: str | None = field(init=False)
    """The chroot suffix of ``hosts``, or ``None``."""

    data_bytes: bytes | None = field(init=False, repr=False)
    """``data`` as compact UTF-8 JSON, the size that counts against the limit; ``None`` without data."""

    kill_grace_s: float = field(init=False)
    """The effective kill grace: the override, or ``session_timeout_s / 6`` so that stopping
    the command fits inside the T/3 margin between losing the lease and the session's expiry."""

    tls_context: ssl.SSLContext | None = field(init=False, repr=False, compare=False)
    """The client TLS context built from the ``tls_*`` files, or None for plain connections."""

    auth: tuple[DigestAuth, ...] = field(init=False, repr=False, compare=False)
    """The credentials read from ``auth_file`` (their repr never shows the password)."""

    acl: ElectionACL | None = field(init=False)
    """The ``acl_*`` ids checked, or None without any (everything created open)."""

    warnings: tuple[str, ...] = field(init=False)
    """Accepted but risky settings, one line each, for the daemon to log at startup."""

    def __post_init__(self) -> None:
        warnings: list[str] = []
        servers, chroot = parse_hosts(self.hosts, "--hosts")
        validate_election_path(self.path, "--path")
        check_seconds("--session-timeout", self.session_timeout_s, SESSION_TIMEOUT_RANGE_S)
        check_seconds("--connect-timeout", self.connect_timeout_s, CONNECT_TIMEOUT_RANGE_S)
        tls_context = check_tls(
            None,
            ca=self.tls_ca,
            cert=self.tls_cert,
            key=self.tls_key,
            verify_hostname=self.tls_verify_hostname,
            field="--tls",
        )
        if tls_context is not None and not self.tls_verify_hostname:
            warnings.append(
                "--tls-no-verify-hostname: any certificate the CA signed is accepted for any host"
            )
        auth = () if self.auth_file is None else (read_auth_file(self.auth_file, "--auth-file"),)
        acl = check_acl(
            ElectionACL(self.acl_participants, self.acl_operators, self.acl_readers)
            if self.acl_participants or self.acl_operators or self.acl_readers
            else None,
            "--acl",
        )
        if acl is not None and not auth and self.tls_cert is None:
            raise ConfigError("--acl-participant", "ACLs need an identity: give --auth-file or --tls-cert")
        check_identity(self.identity, "--id")
        data_bytes = None if self.data is None else payload.check_data(self.data, "--data")
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
        _check_shell_command("--on-change", self.on_change)
        on_child_exit = _check_run_once(
            self.once, self.command, choice("--on-child-exit", ChildExitPolicy, self.on_child_exit)
        )
        if self.try_s is not None:
            check_seconds("--try", self.try_s, _TRY_RANGE_S)
        check_seconds("--hook-timeout", self.hook_timeout_s, _HOOK_TIMEOUT_RANGE_S)
        _check_command(self.command)
        if self.http_address is not None:
            _check_http_address(self.http_address)
        check_priority(self.priority, "--priority")
        recipe = our_recipe(self.recipe, "--recipe")
        if recipe is not Recipe.NATIVE:
            foreign = f"is not supported with --recipe {recipe.value}, whose nodes hold only the identity"
            if self.data is not None:
                raise ConfigError("--data", foreign)
            if self.priority != 0:
                raise ConfigError("--priority", f"{foreign} (priorities are election_daemon's own)")
        pass_env = _check_pass_env(self.pass_env)
        if pass_env and not self.clear_env:
            warnings.append("--pass-env has no effect without --clear-env: the command inherits everything")
        resolved: dict[str, object] = {
            "recipe": recipe,
            "pass_env": pass_env,
            "on_child_exit": on_child_exit,
            "child_output": None
            if self.child_output is None
            else choice("--child-output", ChildOutput, self.child_output),
            "log_format": None
            if self.log_format is None
            else choice("--log-format", LogFormat, self.log_format),
            "servers": servers,
            "chroot": chroot,
            "data_bytes": data_bytes,
            "kill_grace_s": kill_grace_s,
            "tls_context": tls_context,
            "auth": auth,
            "acl": acl,
            "warnings": tuple(warnings),
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def child_output_for(self, log_format: LogFormat) -> ChildOutput:
        """Where the command's output goes with logs in ``log_format``: as configured, or by
        default ``log`` for JSON (stdout stays JSON lines: ``journalctl -o cat | jq`` reads it,
        and journald takes stderr into the same journal) and ``inherit`` for a console."""
        if self.child_output is not None:
            return self.child_output
        return ChildOutput.LOG if log_format is LogFormat.JSON else ChildOutput.INHERIT

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


def _check_run_once(once: bool, command: tuple[str, ...], on_child_exit: ChildExitPolicy) -> ChildExitPolicy:
    """``on_child_exit``, if it agrees with ``--once`` (which needs a command and exits with its status)."""
    if once and not command:
        raise ConfigError("--once", "needs a command to run: give it after '--'")
    if once and on_child_exit is not ChildExitPolicy.EXIT:
        raise ConfigError("--once", "exits with the command's status: not with --on-child-exit rejoin")
    return on_child_exit


def _check_command(command: tuple[str, ...]) -> None:
    if command and not command[0]:
        raise ConfigError("command", "the program name must not be empty")
    for argument in command:
        if "\0" in argument:
            raise ConfigError("command", f"arguments must not contain NUL, got {show(argument)}")


def _check_http_address(address: object) -> None:
    if not (
        isinstance(address, tuple)
        and len(address) == 2
        and isinstance(address[0], str)
        and address[0]
        and isinstance(address[1], int)
        and not isinstance(address[1], bool)
        and 0 <= address[1] <= 65535
    ):
        raise ConfigError("--http", f"must be a (host, port) pair, got {show(address)}")
