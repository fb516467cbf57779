"""Rolling restart of a three-server ZooKeeper ensemble under a fleet of three daemons.

Each server is stopped, started and serving again, one at a time (the ZooKeeper leader last);
then the ZooKeeper leader is killed and started again. Counted from the daemons' own logs:
how often the leader-only command started, how many leadership changes (``elected`` edges
after the first), and how many revocations, by reason. Zero and zero is "no bounce".

    python bench/rolling_restart.py --session-timeout 6 [--rounds 2]

Prints one JSON line per round and a summary; exits 0 whatever the figures (a benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from typing import Any

from election_daemon.testing import ZooKeeperEnsemble
from election_daemon.testing._fleet import daemon_environment


async def _daemon(hosts: str, path: str, name: str, timeout_s: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "election_daemon",
        "--hosts",
        hosts,
        "--path",
        path,
        "--id",
        name,
        "--session-timeout",
        f"{timeout_s:g}",
        "--log-format",
        "json",
        "--",
        "sleep",
        "100000",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=daemon_environment(),
        start_new_session=True,
    )


async def _collect(name: str, proc: asyncio.subprocess.Process, events: list[dict[str, Any]]) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            event["_daemon"] = name
            event["_at"] = time.monotonic()
            events.append(event)


async def _round(ensemble: ZooKeeperEnsemble, timeout_s: float, number: int) -> dict[str, Any]:
    path = f"/bench/rolling-{number}"
    events: list[dict[str, Any]] = []
    procs = [await _daemon(ensemble.hosts, path, f"d{i}", timeout_s) for i in range(3)]
    readers = [asyncio.ensure_future(_collect(f"d{i}", p, events)) for i, p in enumerate(procs)]
    try:
        deadline = time.monotonic() + 30
        while not any(e.get("event") == "child_started" for e in events):
            if time.monotonic() > deadline:
                raise SystemExit("no daemon started its command within 30 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(timeout_s)  # settled: everyone joined
        mark = len(events)
        began = time.monotonic()
        leader = await asyncio.to_thread(ensemble.leader)
        for server in [s for s in ensemble.servers if s is not leader] + [leader]:
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            await asyncio.to_thread(ensemble.wait_quorum)
        leader = await asyncio.to_thread(ensemble.leader)
        await asyncio.to_thread(leader.kill)
        await asyncio.to_thread(ensemble.wait_quorum)
        await asyncio.to_thread(leader.start)
        await asyncio.sleep(2 * timeout_s)  # anything the faults set off has happened by now
        during = events[mark:]
        revoked = collections.Counter(str(e.get("reason")) for e in during if e.get("event") == "revoked")
        return {
            "round": number,
            "session_timeout_s": timeout_s,
            "faults_s": round(time.monotonic() - began - 2 * timeout_s, 1),
            "command_starts": sum(1 for e in during if e.get("event") == "child_started"),
            "leadership_changes": sum(1 for e in during if e.get("event") == "elected"),
            "revoked": dict(revoked),
            "disconnected": sum(1 for e in during if e.get("event") == "disconnected"),
        }
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
        await asyncio.gather(*(p.wait() for p in procs))
        for r in readers:
            r.cancel()


async def _main(args: argparse.Namespace) -> None:
    with ZooKeeperEnsemble(3, max_session_timeout_ms=60_000) as ensemble:
        results = []
        for number in range(args.rounds):
            result = await _round(ensemble, args.session_timeout, number)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(
        json.dumps(
            {
                "summary": True,
                "session_timeout_s": args.session_timeout,
                "rounds": len(results),
                "command_starts": sum(r["command_starts"] for r in results),
                "leadership_changes": sum(r["leadership_changes"] for r in results),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--session-timeout", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
