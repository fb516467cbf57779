"""``election-daemon verify``: a Jepsen-style check of the election on one host, with a report.

It starts a local ZooKeeper ensemble (or targets ``--hosts``), runs daemons whose leader-only
command writes to a fenced register with its term's token, injects faults on a seeded
schedule, records everything into one history ordered by monotonic time, checks it (safety,
containment, liveness, no lost writes) and writes ``history.jsonl``, ``verdict.json`` and
``report.html``. Exit status: 0 if every check passed, 7 on any violation, 2 on bad input.

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

from election_daemon.cli.verify._options import check_report_dir, parse_options
from election_daemon.cli.verify._report import write_report
from election_daemon.cli.verify._runner import run
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import ConfigError, ElectionError

__all__ = ["main"]

_PROG = "election-daemon"


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run ``verify`` with ``argv`` (after the subcommand's name); returns the exit status."""
    try:
        options = parse_options(argv)
        check_report_dir(options.report_dir)
    except ConfigError as e:
        _error(str(e))
        return ExitCode.USAGE
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        result = asyncio.run(run(options, environ, sys.stdout))
    except KeyboardInterrupt:
        _error("interrupted")
        return ExitCode.FAILURE
    except ElectionError as e:
        _error(str(e))
        return ExitCode.ZK_UNREACHABLE
    except Exception as e:
        trace = options.report_dir / "traceback.txt"
        with contextlib.suppress(OSError):
            trace.write_text(traceback.format_exc())
        _error(f"internal error: {type(e).__name__}: {e} (a bug; the traceback is in {trace})")
        return ExitCode.FAILURE
    write_report(result, options.report_dir, sys.stdout)
    return ExitCode.OK if result.verdict.ok else ExitCode.VERIFY_FAILED


def _error(message: str) -> None:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
