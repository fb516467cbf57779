"""Test-only: arms a fault in a daemon's election loop (on PYTHONPATH, Python imports it at start).

``ELECTION_TEST_FAULT=STEP:ARM_FILE``: while ARM_FILE exists, STEP raises (``position``: the
queue read every join and takeover does; ``parse_contenders``: the leader's re-read of the
queue). Nothing of this is in the package: the daemon runs unchanged around it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class InjectedFault(Exception):
    """The fault."""


def _armed(original: Callable[..., Any], arm_file: str, step: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.path.exists(arm_file):
            raise InjectedFault(f"injected in {step}")
        return original(*args, **kwargs)

    return wrapper


def _install(spec: str) -> None:
    from election_daemon.library import candidacy, election

    step, _, arm_file = spec.partition(":")
    if step == "position":
        owner: object = candidacy.Candidacy
    elif step == "parse_contenders":
        owner = election
    else:
        raise SystemExit(f"sitecustomize: unknown fault step {step!r}")
    setattr(owner, step, _armed(getattr(owner, step), arm_file, step))


if os.environ.get("ELECTION_TEST_FAULT"):
    _install(os.environ["ELECTION_TEST_FAULT"])
