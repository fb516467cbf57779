"""One leader election contender per process, for bench/failover.py: this library, aiozk's or kazoo's recipe.

Run as ``python bench/_contender.py KIND --hosts H --path P --session-timeout T`` (and, for the
library over mutual TLS, ``--tls-ca CA --tls-cert CERT --tls-key KEY``). The process
joins the election and writes one JSON object per line on stdout: ``elected`` the moment its
leader code starts to run, ``stopped`` once it has left. Every line carries
``monotonic_s`` from :func:`time.monotonic`: CLOCK_MONOTONIC is system-wide on Linux, so the
benchmark compares it with its own clock. SIGTERM is the graceful stop request: the leader
gives up leadership the way each library documents (``Election.stop()``, aiozk's ``resign()``,
returning from kazoo's leader function), closes its session, writes ``stopped`` and exits.
Each process imports only the library it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from typing import Any

__all__ = ["KINDS", "main"]

KINDS = ("library", "aiozk", "kazoo")


def _emit(event: str, **fields: Any) -> None:
    # One write per line, flushed at once: the benchmark reads the timestamps as they come.
    sys.stdout.write(json.dumps({"event": event, "monotonic_s": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


def _stop_requested() -> asyncio.Event:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop


async def _run_library(args: argparse.Namespace) -> None:
    from election_daemon import Election

    election = Election(
        args.hosts,
        args.path,
        identity=args.id,
        session_timeout_s=args.session_timeout,
        connect_timeout_s=30.0,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    election.on_elected(lambda term: _emit("elected", token=term.token))
    stop = _stop_requested()
    await election.start()
    await stop.wait()
    await election.stop()
    _emit("stopped")


async def _run_aiozk(args: argparse.Namespace) -> None:
    import aiozk

    client = aiozk.ZKClient(args.hosts, session_timeout=args.session_timeout)
    await asyncio.wait_for(client.start(), 30.0)
    election = client.recipes.LeaderElection(args.path)
    stop = _stop_requested()
    await election.volunteer()

    async def lead() -> None:
        await election.wait_for_leadership()
        _emit("elected")

    leading = asyncio.create_task(lead())
    await stop.wait()
    leading.cancel()
    await election.resign()
    await client.close()
    _emit("stopped")


def _run_kazoo(args: argparse.Namespace) -> None:
    from kazoo.client import KazooClient

    stop = threading.Event()
    # The handler runs in the main thread, which kazoo's run() blocks in a lock wait that
    # signals interrupt; setting the event there ends the leader function.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    client = KazooClient(hosts=args.hosts, timeout=args.session_timeout)
    client.start(timeout=30.0)
    election = client.Election(args.path, args.id)

    def lead() -> None:
        _emit("elected")
        stop.wait()

    # Returns once lead() has returned and the lock node is deleted.
    election.run(lead)
    client.stop()
    client.close()
    _emit("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--hosts", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--session-timeout", type=float, required=True, help="seconds")
    parser.add_argument("--id", default="contender")
    parser.add_argument("--tls-ca", help="library only: connect over TLS trusting this CA (PEM)")
    parser.add_argument("--tls-cert", help="library only: client certificate (PEM) for mutual TLS")
    parser.add_argument("--tls-key", help="library only: its private key (PEM)")
    args = parser.parse_args(argv)
    if args.kind != "library" and (args.tls_ca or args.tls_cert):
        parser.error("--tls-ca and --tls-cert are for the library contender only")
    if args.kind == "kazoo":
        _run_kazoo(args)
    else:
        asyncio.run(_run_library(args) if args.kind == "library" else _run_aiozk(args))


if __name__ == "__main__":
    main()
