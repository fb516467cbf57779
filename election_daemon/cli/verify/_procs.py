"""Processes of a verify run: started so that they die with it, found and signalled by process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path

import election_daemon

__all__ = ["PDEATHSIG_PREFIX", "child_environment", "signal_group"]

# util-linux setpriv gives the child a parent-death signal: a verify run that is itself
# SIGKILLed leaves no register or daemon behind. The kernel sends it when the forking *thread*
# ends, so processes are started from the event loop's thread, which lives for the whole run.
PDEATHSIG_PREFIX: tuple[str, ...] = (
    ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") is not None else ()
)

# Variables that would configure the daemons behind the run's back.
_FOREIGN_PREFIXES = ("ELECTION_DAEMON_", "ELECTION_")
_FOREIGN_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without daemon or systemd settings, with this package importable first."""
    clean = {
        name: value
        for name, value in environ.items()
        if not name.startswith(_FOREIGN_PREFIXES) and name not in _FOREIGN_VARIABLES
    }
    package_root = str(Path(election_daemon.__file__).resolve().parents[1])
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, clean.get("PYTHONPATH")]))
    return clean


def signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send ``signum`` to process group ``pgid``; False if the group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
        return True
    return False
