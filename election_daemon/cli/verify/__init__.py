"""``election-daemon verify``: a Jepsen-style check of the election on one host, with a report.

It starts a local ZooKeeper ensemble (or targets ``--hosts``), runs daemons whose leader-only
command writes to a fenced register with its term's token, injects faults on a seeded
schedule, records everything into one history ordered by monotonic time, checks it (safety,
containment, liveness, no lost writes) and writes ``history.jsonl``, ``verdict.json`` and
``report.html``. Exit status: 0 if every check passed, 7 on any violation, 2 on bad input; every failure
ends through :func:`election_daemon.cli.options.guarded`.

Modules: :mod:`._options` (flags), :mod:`._runner` (the run), :mod:`._fleet` (daemons),
:mod:`._nemesis` (faults), :mod:`._register` and :mod:`._workload` (the fenced register and
the command that writes to it), :mod:`._history`, :mod:`._checker`, :mod:`._report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import traceback
from collections.abc import Mapping, Sequence

from election_daemon.cli.options import guarded
from election_daemon.cli.verify._options import VerifyOptions, check_report_dir, parse_options
from election_daemon.cli.verify._report import write_report
from election_daemon.cli.verify._runner import run
from election_daemon.daemon.exitcodes import ExitCode

__all__ = ["main"]


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run ``verify`` with ``argv`` (after the subcommand's name); returns the exit status."""
    parsed: list[VerifyOptions] = []

    def body() -> int:
        options = parse_options(argv)
        check_report_dir(options.report_dir)
        parsed.append(options)
        result = asyncio.run(run(options, environ, sys.stdout))
        write_report(result, options.report_dir, sys.stdout)
        return ExitCode.OK if result.verdict.ok else ExitCode.VERIFY_FAILED

    def keep_traceback(_exc: BaseException) -> str:
        if not parsed:
            return "no report directory for the traceback"
        trace = parsed[0].report_dir / "traceback.txt"
        with contextlib.suppress(OSError):
            trace.write_text(traceback.format_exc())
        return f"the traceback is in {trace}"

    return guarded(body, on_bug=keep_traceback)
