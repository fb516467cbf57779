"""The command line: ``python -m election_daemon`` runs one participant; subcommands operate.

Every failure the user can cause ends in one line on stderr and a documented exit code
(:class:`election_daemon.daemon.exitcodes.ExitCode`), never a traceback. Only a bug gives
exit code 1, with its traceback in the structured log.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from election_daemon.daemon.config import DaemonConfig, LogFormat, load_daemon_config
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.hooks import HookRunner
from election_daemon.daemon.lifeline import Lifeline
from election_daemon.daemon.logs import configure_logging, get_logger
from election_daemon.daemon.service import Daemon
from election_daemon.daemon.supervisor import ChildSupervisor
from election_daemon.daemon.systemd import SystemdNotifier
from election_daemon.errors import ChildError, ConfigError

__all__ = ["SUBCOMMANDS", "main"]

PROG = "election-daemon"

Subcommand = Callable[[Sequence[str], Mapping[str, str]], int]

# "module:function" of each subcommand, imported only when used so that the daemon's start
# pays for none of them. Without a subcommand, the daemon runs.
SUBCOMMANDS: dict[str, str] = {
    "status": "election_daemon.cli.observe:status_main",
    "watch": "election_daemon.cli.observe:watch_main",
    "step-down": "election_daemon.cli.stepdown:main",
    "dashboard": "election_daemon.cli.dashboard:main",
    "verify": "election_daemon.cli.verify:main",
}


def _subcommand(name: str) -> Subcommand:
    module, _, function = SUBCOMMANDS[name].partition(":")
    command: Subcommand = getattr(importlib.import_module(module), function)
    return command


def error(message: str) -> None:
    """The one-line error every user-caused failure ends with."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ
    # aiozk reports every reconnect on stderr; our own events and errors say what matters.
    logging.getLogger("aiozk").setLevel(logging.CRITICAL)
    if args and args[0] in SUBCOMMANDS:
        return _subcommand(args[0])(args[1:], environ)
    return run_daemon(args, environ)


def run_daemon(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    try:
        config = load_daemon_config(argv, environ)
    except ConfigError as e:
        error(str(e))
        return ExitCode.USAGE
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    log_format = config.log_format or (LogFormat.CONSOLE if sys.stdout.isatty() else LogFormat.JSON)
    # Forked before the event loop or any thread exists: the guardian must inherit no locks.
    lifeline = Lifeline.spawn() if config.command else None
    try:
        return _run(config, str(log_format), lifeline)
    finally:
        if lifeline is not None:
            lifeline.close()


def _run(config: DaemonConfig, log_format: str, lifeline: Lifeline | None) -> int:
    log = get_logger()
    # With --clear-env, the command and hooks start from a cut-down copy taken now.
    environment = config.child_environment(os.environ)
    supervisor = None
    if config.command:
        try:
            supervisor = ChildSupervisor(
                config.command,
                kill_grace_s=config.kill_grace_s,
                log=log,
                lifeline=lifeline,
                environment=environment,
            )
        except ChildError as e:
            error(str(e))
            return ExitCode.COMMAND_FAILED
    hooks = HookRunner(timeout_s=config.hook_timeout_s, log=log, environment=environment)
    daemon = Daemon(
        config,
        log=log,
        notifier=SystemdNotifier.from_environment(log=log),
        supervisor=supervisor,
        hooks=hooks,
    )
    configure_logging(log_format, context=daemon.log_context)
    try:
        code = asyncio.run(daemon.run())
    except KeyboardInterrupt:
        return ExitCode.OK
    except Exception as e:
        log.exception("internal_error", reason=f"{type(e).__name__}: {e}")
        error(f"internal error: {type(e).__name__}: {e} (a bug; the log has the traceback)")
        return ExitCode.FAILURE
    if code in (
        ExitCode.USAGE,
        ExitCode.ZK_UNREACHABLE,
        ExitCode.ZK_REFUSED,
        ExitCode.COMMAND_FAILED,
        ExitCode.ELECTION_FAILED,
    ):
        error(daemon.failure or ExitCode(code).name.lower())
    return code
