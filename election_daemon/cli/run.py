"""``python -m election_daemon [OPTIONS] [-- COMMAND ...]``: run one participant.

Flags, ``ELECTION_DAEMON_*`` variables and the TOML file (:mod:`.options`) become a
:class:`DaemonConfig` of parsed values; the daemon runs it. Every failure ends through
:func:`.options.guarded`: one line on stderr and a documented exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

from election_daemon.cli.options import (
    COMMAND,
    CONNECTION_OPTIONS,
    Command,
    build_parser,
    error,
    guarded,
    load,
)
from election_daemon.daemon.config import ChildExitPolicy, ChildOutput, DaemonConfig, JSONValue, LogFormat
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.hooks import HookRunner
from election_daemon.daemon.lifeline import Lifeline
from election_daemon.daemon.logs import configure_logging, get_logger
from election_daemon.daemon.service import Daemon
from election_daemon.daemon.supervisor import ChildSupervisor
from election_daemon.daemon.systemd import SystemdNotifier
from election_daemon.errors import ConfigError
from election_daemon.library import payload
from election_daemon.library.events import Event
from election_daemon.library.limits import choice, parse_host_port, show
from election_daemon.library.recipes import our_recipe

__all__ = ["DAEMON", "build_daemon_parser", "load_daemon_config", "run_daemon"]

DAEMON = Command(
    prog="election-daemon",
    usage="%(prog)s [OPTIONS] [-- COMMAND [ARGS...]]\n       %(prog)s SUBCOMMAND --help",
    description=(
        "Run COMMAND only while this process is the leader elected at PATH on ZooKeeper,\n"
        "and stop it when leadership ends.\n\n"
        "subcommands: status, watch, step-down, dashboard, verify (each has --help)"
    ),
    options=(
        *CONNECTION_OPTIONS,
        "acl-participant",
        "acl-operator",
        "acl-reader",
        "id",
        "data",
        "kill-grace",
        "on-child-exit",
        "exit-on-loss",
        "once",
        "try",
        "child-output",
        "log-format",
        "on-elected",
        "on-revoked",
        "on-change",
        "hook-timeout",
        "http",
        "priority",
        "recipe",
        "clear-env",
        "pass-env",
        COMMAND,
    ),
    required=("hosts", "path"),
    config_file=True,
    trailing_command=True,
)


def build_daemon_parser() -> argparse.ArgumentParser:
    """The daemon's argument parser; its ``--help`` lists the environment and exit codes.

    The command after ``--`` is not the parser's: :func:`load_daemon_config` splits it off first.
    """
    return build_parser(DAEMON)


def load_daemon_config(argv: Sequence[str], environ: Mapping[str, str]) -> DaemonConfig:
    """The configuration from ``argv`` (without the program name) and ``environ``.

    Precedence is flag > environment > config file > default; everything after the first
    ``--`` in ``argv`` is the leader-only command.

    :raises ConfigError: for a bad flag, variable, file or value; the message is one line.
    :raises SystemExit: with status 0, after printing ``--help`` or ``--version``.
    """
    settings = load(DAEMON, argv, environ)
    values = settings.values()
    with settings.blame():
        if "data" in values:
            values["data"] = _parse_data(values["data"])
        if "http" in values:
            values["http_address"] = _parse_http(values.pop("http"))
        if "on_child_exit" in values:
            values["on_child_exit"] = choice("--on-child-exit", ChildExitPolicy, values["on_child_exit"])
        if "log_format" in values:
            values["log_format"] = choice("--log-format", LogFormat, values["log_format"])
        if "child_output" in values:
            values["child_output"] = choice("--child-output", ChildOutput, values["child_output"])
        if "recipe" in values:
            values["recipe"] = our_recipe(values["recipe"], "--recipe")
        if "tls_no_verify_hostname" in values:
            values["tls_verify_hostname"] = not values.pop("tls_no_verify_hostname")
        return DaemonConfig(**values)


def _parse_http(address: str) -> tuple[str, int]:
    try:
        return parse_host_port(address, default_port=None, min_port=0)
    except ValueError as exc:
        raise ConfigError("--http", f"{exc}; expected HOST:PORT") from None


def _parse_data(text: str) -> JSONValue:
    # The very decoder every reader of our node uses (strict numbers, bounded depth). The text
    # may be pretty-printed: its size limit is looser than the one DaemonConfig checks on the
    # compact encoding.
    try:
        value: JSONValue = payload.loads(text, max_bytes=4 * payload.MAX_DATA_BYTES)
        payload.dumps(value).encode()  # lone surrogates decode from text but encode to nothing
    except (ValueError, RecursionError) as exc:
        # PayloadError, and UnicodeEncodeError (undecodable bytes from argv), are ValueErrors.
        reason = str(exc)
        if reason.startswith("not valid JSON (") and reason.endswith(")"):
            reason = reason[len("not valid JSON (") : -1]
        raise ConfigError("--data", f"must be valid JSON ({reason}), got {show(text)}") from None
    return value


def run_daemon(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    config_or_code = _load_or_exit(argv, environ)
    if isinstance(config_or_code, int):
        return config_or_code
    config = config_or_code
    log_format = config.log_format or (LogFormat.CONSOLE if sys.stdout.isatty() else LogFormat.JSON)
    lifelines: list[Lifeline] = []

    def spawn_lifeline() -> int:
        lifelines.append(Lifeline.spawn())
        return ExitCode.OK

    # Through guarded: a guardian that cannot start (out of processes) is a one-line error, exit 5.
    if config.command and (code := guarded(spawn_lifeline)) != ExitCode.OK:
        return code
    lifeline = lifelines[0] if lifelines else None
    try:
        return _run(config, log_format, lifeline)
    finally:
        if lifeline is not None:
            lifeline.close()


def _load_or_exit(argv: Sequence[str], environ: Mapping[str, str]) -> DaemonConfig | int:
    loaded: list[DaemonConfig] = []

    def body() -> int:
        loaded.append(load_daemon_config(argv, environ))
        return ExitCode.OK

    code = guarded(body)
    return loaded[0] if loaded else code


def _run(config: DaemonConfig, log_format: LogFormat, lifeline: Lifeline | None) -> int:
    log = get_logger()

    def log_bug(exc: BaseException) -> str:
        log.exception(Event.INTERNAL_ERROR, reason=f"{type(exc).__name__}: {exc}")
        return "the log has the traceback"

    def body() -> int:
        # With --clear-env, the command and hooks start from a cut-down copy taken now.
        environment = config.child_environment(os.environ)
        supervisor = None
        if config.command:
            supervisor = ChildSupervisor(
                config.command,
                kill_grace_s=config.kill_grace_s,
                log=log,
                lifeline=lifeline,
                environment=environment,
                output=config.child_output_for(log_format),
            )
        hooks = HookRunner(timeout_s=config.hook_timeout_s, log=log, environment=environment)
        daemon = Daemon(
            config,
            log=log,
            notifier=SystemdNotifier.from_environment(log=log),
            supervisor=supervisor,
            hooks=hooks,
            lifeline=lifeline,
        )
        configure_logging(str(log_format), context=daemon.log_context)
        code = asyncio.run(daemon.run())
        if code in (
            ExitCode.USAGE,
            ExitCode.ZK_UNREACHABLE,
            ExitCode.ZK_REFUSED,
            ExitCode.COMMAND_FAILED,
            ExitCode.ELECTION_FAILED,
            ExitCode.TLS_FAILED,
            ExitCode.NOT_ELECTED,
        ):
            error(daemon.failure or ExitCode(code).name.lower())
        return code

    return guarded(body, on_bug=log_bug)
