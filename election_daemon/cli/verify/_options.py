"""The ``verify`` command line: its flags, checked into :class:`VerifyOptions` or a :class:`ConfigError`."""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from election_daemon.cli.options import PROG, Command, Settings, load
from election_daemon.cli.options import build_parser as _build_parser
from election_daemon.cli.verify._nemesis import FAULTS, SERVER_FAULTS, applicable_faults
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import ConfigError
from election_daemon.library.limits import parse_hosts
from election_daemon.library.security import check_tls, read_auth_file

__all__ = ["COMMAND", "VerifyOptions", "build_parser", "check_report_dir", "parse_options"]

_QUICK_SESSION_TIMEOUT_S = 2.0
_SESSION_TIMEOUT_RANGE_S = (1.0, 60.0)
_ENSEMBLE_SIZES = (3, 5)
_PARTICIPANTS_RANGE = (2, 9)
_DEFAULT_REPORT = "verify-report"
_SECURITY_PATHS = ("tls-ca", "tls-cert", "tls-key", "auth-file")


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
    tls: bool = False
    """A local ensemble serving mutual TLS only, enforcing digest authentication."""
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_verify_hostname: bool = True
    auth_file: Path | None = None
    """With --hosts: the daemons' and the operator actions' TLS material and credentials."""

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


# Flags only: an ELECTION_DAEMON_HOSTS meant for a daemon must never aim faults at production.
COMMAND = Command(
    prog=f"{PROG} verify",
    description=(
        "Run daemons under injected faults against a fenced register, check the history "
        "(safety, containment, liveness, no lost writes) and write a report."
    ),
    options=(
        "hosts",
        "ensemble",
        "participants",
        "duration",
        "faults",
        "quick",
        "faults-from",
        "seed",
        "session-timeout",
        "report",
        "tls",
        "tls-ca",
        "tls-cert",
        "tls-key",
        "tls-no-verify-hostname",
        "auth-file",
    ),
    help={
        "hosts": "target this ZooKeeper instead of a local ensemble",
        "tls": (
            "run the local ensemble over mutual TLS only, enforcing digest authentication: the "
            "daemons connect with a client certificate and a digest user, the only participant "
            "of the election's ACLs; step-down requests as its operator user, deletions and "
            "junk writes as the super user"
        ),
        "tls-ca": "with --hosts: connect over TLS, trusting the CAs in this PEM bundle",
        "tls-cert": "with --hosts: client certificate (PEM) for mutual TLS",
        "tls-key": "with --hosts: private key of --tls-cert, if not in its file",
        "tls-no-verify-hostname": "with --hosts: accept any certificate the CA signed, for any host",
        "auth-file": (
            "with --hosts: digest credentials (see the daemon's --auth-file) of the daemons and "
            "of the operator faults (delete-node, delete-path, step-down, hostile)"
        ),
        "session-timeout": f"the daemons' session timeout T (default {_QUICK_SESSION_TIMEOUT_S:g})",
    },
    exclusive=(("hosts", "ensemble"), ("duration", "faults", "quick")),
    environment=False,
    notes=(
        textwrap.fill(
            f"faults: {', '.join(FAULTS)}. With --hosts only those that need no control of the "
            f"servers: {', '.join(applicable_faults(local_servers=False))}.",
            width=79,
            break_on_hyphens=False,
        ),
        "",
    ),
    exit_codes=(
        ExitCode.OK,
        ExitCode.FAILURE,
        ExitCode.USAGE,
        ExitCode.ZK_UNREACHABLE,
        ExitCode.ZK_REFUSED,
        ExitCode.VERIFY_FAILED,
        ExitCode.TLS_FAILED,
    ),
    exit_meanings={
        ExitCode.OK: "every check passed",
        ExitCode.USAGE: "bad command line, or --report cannot be created or written to",
        ExitCode.VERIFY_FAILED: "a check found a violation",
    },
)


def build_parser() -> argparse.ArgumentParser:
    return _build_parser(COMMAND)


def parse_options(argv: Sequence[str]) -> VerifyOptions:
    """The options, or ConfigError naming the flag at fault (SystemExit for --help)."""
    settings = load(COMMAND, argv, {})
    hosts: str | None = settings.get("hosts")
    if hosts is not None:
        parse_hosts(hosts, field="--hosts")
    ensemble: int = settings.get("ensemble", 3)
    if ensemble not in _ENSEMBLE_SIZES:
        raise ConfigError("--ensemble", f"must be 3 or 5, not {ensemble}")
    participants: int = settings.get("participants", 3)
    low, high = _PARTICIPANTS_RANGE
    if not low <= participants <= high:
        raise ConfigError("--participants", f"must be {low} to {high}, not {participants}")
    duration: float | None = settings.get("duration")
    if duration is not None and not duration > 0:
        raise ConfigError("--duration", f"must be a positive number of seconds, not {duration:g}")
    faults: int | None = settings.get("faults")
    if faults is not None and faults < 1:
        raise ConfigError("--faults", f"must be at least 1, not {faults}")
    timeout_s: float = settings.get("session_timeout_s", _QUICK_SESSION_TIMEOUT_S)
    low_s, high_s = _SESSION_TIMEOUT_RANGE_S
    if not low_s <= timeout_s <= high_s:
        raise ConfigError("--session-timeout", f"must be {low_s:g} to {high_s:g} seconds, not {timeout_s:g}")
    seed: int | None = settings.get("seed")
    security = _security(settings, hosts)
    return VerifyOptions(
        hosts=hosts,
        ensemble_size=ensemble,
        participants=participants,
        duration_s=duration,
        faults=faults,
        faults_from=_fault_names(settings.get("faults_from"), local_servers=hosts is None),
        seed=seed if seed is not None else int.from_bytes(os.urandom(4), "big"),
        session_timeout_s=timeout_s,
        report_dir=Path(settings.get("report", _DEFAULT_REPORT)),
        quick=bool(settings.get("quick")),
        **security,
    )


def _security(settings: Settings, hosts: str | None) -> dict[str, Any]:
    """``--tls`` (a local ensemble) or, with ``--hosts``, the TLS files and the auth file; checked
    now (files readable, certificates load, credentials well formed), a usage error naming its
    flag before any daemon runs."""
    tls = bool(settings.get("tls"))
    if tls and hosts is not None:
        raise ConfigError(
            "--tls", "starts a local ensemble: with --hosts give --tls-ca, --tls-cert, --auth-file"
        )
    paths = {name: settings.get(name.replace("-", "_")) for name in _SECURITY_PATHS}
    verify_hostname = not settings.get("tls_no_verify_hostname", False)
    if hosts is None:
        for name, value in (*paths.items(), ("tls-no-verify-hostname", None if verify_hostname else True)):
            if value is not None:
                raise ConfigError(f"--{name}", "needs --hosts; with a local ensemble give --tls")
    check_tls(
        None,
        ca=paths["tls-ca"],
        cert=paths["tls-cert"],
        key=paths["tls-key"],
        verify_hostname=verify_hostname,
        field="--tls",
    )
    if paths["auth-file"] is not None:
        read_auth_file(paths["auth-file"], "--auth-file")

    def absolute(name: str) -> Path | None:
        value = paths[name]
        return None if value is None else Path(value).absolute()

    return {
        "tls": tls,
        "tls_ca": absolute("tls-ca"),
        "tls_cert": absolute("tls-cert"),
        "tls_key": absolute("tls-key"),
        "tls_verify_hostname": verify_hostname,
        "auth_file": absolute("auth-file"),
    }


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
