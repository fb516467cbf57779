"""Fleets of real daemons: start ``python -m election_daemon`` cleanly, read its log, check safety.

What the demo, ``verify``, the failover benchmark and the integration tests share:

- :func:`daemon_environment`: the environment a daemon is started with, without the starter's
  own daemon or systemd settings, with this package first on ``PYTHONPATH``;
- :func:`daemon_args` and :func:`daemon_argv`: its command line; :func:`start_daemon` starts it
  with both, in a session of its own, dying with its starter (:func:`start_process`);
- :func:`parse_event` and :func:`read_lines`: its stdout, which its leader-only command shares,
  as typed :class:`DaemonEvent` log lines and the command's own lines;
- :class:`SafetyCheck`: as events arrive, leader-only commands of different daemons never run
  at once and fencing tokens grow.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import election_daemon
from election_daemon._processes import process_group_alive
from election_daemon.testing._process import start_process

__all__ = [
    "DaemonEvent",
    "SafetyCheck",
    "daemon_args",
    "daemon_argv",
    "daemon_environment",
    "parse_event",
    "read_lines",
    "start_daemon",
]

PACKAGE_ROOT = Path(election_daemon.__file__).resolve().parents[1]
"""The directory holding the ``election_daemon`` package: first on a daemon's ``PYTHONPATH``."""

# Variables of the starter's own environment that would configure a daemon behind its back:
# ELECTION_DAEMON_* settings, ELECTION_* if the starter is itself some daemon's leader-only
# command (its term's token and id), and a service manager's notify socket, watchdog and sockets.
_FOREIGN_PREFIX = "ELECTION_"
_FOREIGN_VARIABLES = frozenset(
    {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}
)

_K = TypeVar("_K", bound=Hashable)


def daemon_environment(
    overrides: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``environ`` (default ``os.environ``) without daemon or systemd settings, this package first
    on ``PYTHONPATH``, then ``overrides``."""
    clean = {
        name: value
        for name, value in (os.environ if environ is None else environ).items()
        if not name.startswith(_FOREIGN_PREFIX) and name not in _FOREIGN_VARIABLES
    }
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), clean.get("PYTHONPATH")]))
    return {**clean, **(overrides or {})}


def daemon_args(
    hosts: str,
    path: str,
    *,
    identity: str | None = None,
    session_timeout_s: float = 2.0,
    options: Sequence[str] = (),
    command: Sequence[str] = (),
) -> list[str]:
    """The daemon's arguments: ``--hosts --path --session-timeout [--id] OPTIONS [-- COMMAND]``."""
    args = ["--hosts", hosts, "--path", path, "--session-timeout", f"{session_timeout_s:g}"]
    if identity is not None:
        args += ["--id", identity]
    args += options
    if command:
        args += ["--", *command]
    return args


def daemon_argv(args: Sequence[str]) -> list[str]:
    """``python -m election_daemon ARGS`` with this interpreter."""
    return [sys.executable, "-m", "election_daemon", *args]


async def start_daemon(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stderr: int | IO[bytes] | None = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """Start ``python -m election_daemon ARGS`` with :func:`daemon_environment` (``env`` as it is
    if given), stdout piped, in a session of its own, dying with this process."""
    return await start_process(
        daemon_argv(args), env=daemon_environment() if env is None else env, stderr=stderr
    )


class DaemonEvent(dict[str, Any]):
    """One JSON log line of a daemon (its fields), with the ``time.monotonic()`` at which it was read.

    The typed properties give ``None`` for a field that is missing or of the wrong type.
    """

    def __init__(self, fields: Mapping[str, Any], received_s: float) -> None:
        super().__init__(fields)
        self.received_s = received_s

    @property
    def name(self) -> str:
        """The ``event`` field: ``elected``, ``child_started`` ..."""
        return str(self["event"])

    def text(self, key: str) -> str | None:
        value = self.get(key)
        return value if isinstance(value, str) else None

    def integer(self, key: str) -> int | None:
        value = self.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def number(self, key: str) -> float | None:
        value = self.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def state(self) -> str | None:
        return self.text("state")

    @property
    def node(self) -> str | None:
        return self.text("node")

    @property
    def token(self) -> int | None:
        return self.integer("token")

    @property
    def pgid(self) -> int | None:
        """The process group a ``child_*`` or ``hook_*`` line names: its ``pgid``, else its ``pid``
        (a leader-only command leads its own group)."""
        return self.integer("pgid") or self.integer("pid")

    @property
    def has_own_time(self) -> bool:
        """Whether the line carries its own ``monotonic_s``."""
        return self.number("monotonic_s") is not None

    @property
    def at_s(self) -> float:
        """When it happened: the line's own ``monotonic_s`` if it has one, else when it was read.
        Both are CLOCK_MONOTONIC, which every process on the machine shares."""
        own = self.number("monotonic_s")
        return self.received_s if own is None else own


def parse_event(line: str | bytes, received_s: float) -> DaemonEvent | None:
    """The log event on a daemon's stdout line, or None for other lines (its command's output):
    an event is a JSON object with a string ``event``."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if not text.lstrip().startswith("{"):
        return None
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("event"), str):
        return None
    return DaemonEvent(fields, received_s)


async def read_lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """The stream's lines, decoded, without their line ends, until end of file.

    A line longer than the stream's limit is dropped; reading resumes after its end.
    """
    while True:
        try:
            raw = await stream.readline()
        except ValueError:
            continue
        if not raw:
            return
        yield raw.decode("utf-8", "replace").rstrip("\r\n")


@dataclass(frozen=True, slots=True)
class _Term:
    label: str
    token: int | None
    pgid: int | None


class SafetyCheck(Generic[_K]):
    """What the logs must show, checked as they arrive: leader-only commands of different daemons
    never run at once, and each starts with a larger fencing token than the last.

    A daemon is any hashable key (one per process: a restarted daemon is a new one). Its term
    opens with ``child_started`` and closes with its ``revoked`` or ``child_exited``
    (:meth:`term_ended`). A daemon killed with SIGKILL logs neither; its term counts as closed
    once its process has ended (:meth:`process_ended`) and its command's process group is gone.

    :param group_alive: whether a process group has a live member (a stand-in for tests).
    """

    def __init__(self, group_alive: Callable[[int], bool] = process_group_alive) -> None:
        self._group_alive = group_alive
        self._open: dict[_K, _Term] = {}
        self._dead: set[_K] = set()
        self._last_token: int | None = None
        self.violations: list[str] = []

    def child_started(self, daemon: _K, label: str, token: int | None, pgid: int | None) -> None:
        """``daemon`` (called ``label`` in violations) started its command in group ``pgid``."""
        for other, term in list(self._open.items()):
            if other == daemon:
                continue
            if other in self._dead and (term.pgid is None or not self._group_alive(term.pgid)):
                del self._open[other]
                continue
            self.violations.append(
                f"{label} started its command (token {_token_text(token)}) while "
                f"{term.label}'s (token {_token_text(term.token)}) was still running"
            )
        if token is not None:
            if self._last_token is not None and token <= self._last_token:
                self.violations.append(
                    f"{label} started its command with token {token}, "
                    f"not above the previous {self._last_token}"
                )
            self._last_token = token
        self._open[daemon] = _Term(label, token, pgid)

    def term_ended(self, daemon: _K) -> None:
        """``daemon`` logged ``revoked`` or ``child_exited``."""
        self._open.pop(daemon, None)

    def process_ended(self, daemon: _K) -> None:
        """``daemon``'s process has ended (its command may linger in its group)."""
        self._dead.add(daemon)


def _token_text(token: int | None) -> str:
    return "?" if token is None else str(token)
