"""``python -m election_daemon.cli.demo``: start the ensemble, run the scenario under a view, stop
everything, and end with the exit status (see :data:`~election_daemon.cli.demo.config.COMMAND`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator, Sequence

from rich.console import Console

from election_daemon.cli.demo.config import (
    ELECTION_PATH,
    EXIT_INTERRUPTED,
    PARTICIPANT_IDS,
    TICK_TIME_MS,
    DemoConfig,
    parse_args,
)
from election_daemon.cli.demo.fleet import Fleet, QueueObserver
from election_daemon.cli.demo.model import Cluster, Summary, count_of
from election_daemon.cli.demo.scenario import DemoFailedError, Scenario
from election_daemon.cli.demo.view import LiveView, PlainView, View
from election_daemon.cli.options import PROG, error, guarded
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import ElectionError
from election_daemon.testing import ZooKeeperEnsemble

__all__ = ["main"]

_ENSEMBLE_START_TIMEOUT_S = 30.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; the exit status is 0 if every failover happened in time and safely.

    A bad flag is one line on stderr and exit code 2, as for every command (``guarded``).
    """
    args = sys.argv[1:] if argv is None else argv
    return guarded(lambda: _show(parse_args(args)))


def _show(config: DemoConfig) -> int:
    # aiozk logs connection aborts as warnings through the root logger, which would print them
    # over the live view; the demo reports what matters itself.
    logging.getLogger("aiozk").setLevel(logging.CRITICAL)
    interactive = sys.stdout.isatty()
    console = Console()
    ensemble: ZooKeeperEnsemble | None = None
    try:
        ensemble = ZooKeeperEnsemble(3, tick_time_ms=TICK_TIME_MS, start_timeout_s=_ENSEMBLE_START_TIMEOUT_S)
        with _spinner(console, interactive, "starting a three-server ZooKeeper ensemble"):
            ensemble.start()
        return asyncio.run(_run(config, ensemble.hosts, console, interactive))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ElectionError as e:
        error(f"FAILED: {e}")
        return ExitCode.FAILURE
    finally:
        if ensemble is not None:
            ensemble.close()


async def _run(config: DemoConfig, hosts: str, console: Console, interactive: bool) -> int:
    cluster = Cluster()
    view: View = LiveView(cluster, console, config.faults) if interactive else PlainView(sys.stdout)
    fleet = Fleet(hosts, config.session_timeout_s, cluster)
    loop = asyncio.get_running_loop()
    failure: str | None = None
    interrupted = False

    async def stop_daemons() -> None:
        view.status("stopping the daemons", since_s=time.monotonic())
        await fleet.stop()

    def restore_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    # Unwound in reverse: the daemons stop (on screen), the observer reads the queue a last time
    # and goes, the view freezes on that last picture (no leader), signals reset.
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(restore_signals)
        view.open(
            f"{PROG} demo",
            [
                f"{len(PARTICIPANT_IDS)} daemons on a three-server ZooKeeper ensemble at {hosts}",
                f"path {ELECTION_PATH}, session timeout {config.session_timeout_s:g} s, "
                f"{count_of(config.faults, 'fault')}, seed {config.seed}",
            ],
        )
        stack.push_async_callback(view.close)
        await stack.enter_async_context(
            QueueObserver(hosts, ELECTION_PATH, cluster, session_timeout_s=config.session_timeout_s)
        )
        stack.push_async_callback(stop_daemons)
        task = asyncio.ensure_future(Scenario(config, fleet, cluster, view).run())
        # Ctrl-C and SIGTERM end the scenario, never the clean-up.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            interrupted = True
        except DemoFailedError as e:
            failure = str(e)
    problems = cluster.problems()
    if failure is not None and failure not in problems:
        problems.insert(0, failure)
    view.summary(Summary(tuple(cluster.failovers), tuple(problems), interrupted))
    for problem in problems:
        error(f"FAILED: {problem}")
    if problems:
        for member, lines in fleet.stderr_tails():
            error(f"stderr of {member.id} (pid {member.pid}):\n  " + "\n  ".join(lines))
        return ExitCode.FAILURE
    return EXIT_INTERRUPTED if interrupted else ExitCode.OK


@contextlib.contextmanager
def _spinner(console: Console, interactive: bool, what: str) -> Iterator[None]:
    if interactive:
        with console.status(what):
            yield
    else:
        yield


if __name__ == "__main__":
    raise SystemExit(main())
