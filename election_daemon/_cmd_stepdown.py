"""``step-down``: ask the current leader to resign, optionally naming who leads next.

The request travels through ZooKeeper, so it works whatever host the leader runs on:

1. with ``--to ID``, a handover naming that participant's node is written into the
   election path's data: contenders ahead of it step aside instead of leading, so the named
   participant leads next with one failover and no leader in between;
2. a step-down request is added to the leader's node data; the leader watches its own node,
   stops its work (the daemon stops its command), and rejoins at the back of the queue;
3. the command waits until a different node leads (the named one, with ``--to``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence

from ._exitcodes import ExitCode
from ._zk import ZooKeeper
from .candidacy import Participant, read_queue, with_step_down_request, write_handover
from .cli import error
from .config import format_servers, parse_hosts, validate_election_path
from .errors import ConfigError, ConnectTimeoutError, ElectionError, ZooKeeperError

__all__ = ["main"]


class _StepDownError(ElectionError):
    """The step-down could not be done as asked."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="election-daemon step-down",
        description="Ask the current leader to resign; with --to, name the participant that leads next.",
    )
    parser.add_argument("--hosts", help="ZooKeeper connect string (env ELECTION_DAEMON_HOSTS)")
    parser.add_argument("--path", help="election path (env ELECTION_DAEMON_PATH)")
    parser.add_argument("--to", metavar="ID", help="the participant (by identity) that should lead next")
    parser.add_argument(
        "--wait", metavar="SECONDS", type=float, default=30.0, help="how long to wait for the new leader"
    )
    parser.add_argument("--connect-timeout", metavar="SECONDS", type=float, default=10.0)
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
        hosts = args.hosts or environ.get("ELECTION_DAEMON_HOSTS")
        path = args.path or environ.get("ELECTION_DAEMON_PATH")
        if not hosts:
            raise ConfigError("--hosts", "is required (or ELECTION_DAEMON_HOSTS)")
        if not path:
            raise ConfigError("--path", "is required (or ELECTION_DAEMON_PATH)")
        servers, chroot = parse_hosts(hosts, "--hosts")
        validate_election_path(path, "--path")
        if not args.wait > 0:
            raise ConfigError("--wait", f"must be a positive number of seconds, got {args.wait!r}")
    except ConfigError as e:
        error(str(e))
        return ExitCode.USAGE
    zk = ZooKeeper.create(format_servers(servers), chroot=chroot, session_timeout_s=10.0)
    try:
        print(asyncio.run(_step_down(zk, path, args.to, args.wait, args.connect_timeout)))
    except ConnectTimeoutError as e:
        error(str(e))
        return ExitCode.ZK_UNREACHABLE
    except _StepDownError as e:
        error(str(e))
        return ExitCode.OPERATION_FAILED
    except ZooKeeperError as e:
        error(str(e))
        return ExitCode.ZK_REFUSED
    return ExitCode.OK


async def _step_down(
    zk: ZooKeeper, path: str, to: str | None, wait_s: float, connect_timeout_s: float
) -> str:
    await zk.start(connect_timeout_s=connect_timeout_s)
    try:
        queue = await read_queue(zk, path)
        if not queue:
            raise _StepDownError(f"nobody leads {path}")
        leader = queue[0]
        target = _target(queue, to) if to is not None else None
        if target is not None and target.node == leader.node:
            return f"{_name(leader)} already leads {path} (token {leader.token})"
        started = time.monotonic()
        if target is not None:
            await write_handover(zk, path, target.node)
        raw, stat = await zk.get(leader.node)
        await zk.set(leader.node, with_step_down_request(raw, uuid.uuid4().hex), version=stat.version)
        new = await _wait_for_new_leader(zk, path, leader, target, started + wait_s)
        took_s = time.monotonic() - started
        return (
            f"{path}: {_name(leader)} (token {leader.token}) -> {_name(new)} (token {new.token}) "
            f"in {took_s:.3f} s"
        )
    finally:
        await zk.close()


def _target(queue: list[Participant], to: str) -> Participant:
    matches = [p for p in queue if p.id == to]
    if not matches:
        known = ", ".join(repr(p.id) for p in queue)
        raise _StepDownError(f"no participant {to!r} in the election (participants: {known})")
    if len(matches) > 1:
        raise _StepDownError(f"{len(matches)} participants are named {to!r}; give each a unique --id")
    return matches[0]


async def _wait_for_new_leader(
    zk: ZooKeeper, path: str, old: Participant, target: Participant | None, deadline: float
) -> Participant:
    while True:
        changed = zk.watch_children(path)
        try:
            await zk.children(path, watch=True)
            queue = await read_queue(zk, path)
            if queue and queue[0].node != old.node and (target is None or queue[0].node == target.node):
                return queue[0]
            if target is not None and all(p.node != target.node for p in queue):
                raise _StepDownError(f"{_name(target)} left the election before it could lead")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _StepDownError(
                    f"no new leader of {path} within the wait; {_name(old)} was asked to step down"
                )
            await asyncio.wait_for(asyncio.shield(changed), remaining)
        except TimeoutError:
            continue
        finally:
            changed.cancel()


def _name(p: Participant) -> str:
    return repr(p.id) if p.id is not None else p.node
