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

import asyncio
import time
from collections.abc import Mapping, Sequence

from election_daemon.cli.observe import ObserveOptions, observer_command, run_observer_command
from election_daemon.cli.options import OperationError, Settings
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import ConfigError, NoAuthError
from election_daemon.library._zk import ZooKeeper
from election_daemon.library.candidacy import Participant, read_queue
from election_daemon.library.limits import format_servers, parse_hosts
from election_daemon.library.protocol import new_request_id, with_step_down_request, write_handover

__all__ = ["main"]

_DESCRIPTION = (
    "Ask the current leader of the election at PATH to resign: it stops its work and rejoins\n"
    "at the back of the queue. With --to ID the named participant leads next, with one\n"
    "failover and no leader in between. Returns once a new leader is first in the queue;\n"
    "exit code 8 if there is no leader, no such participant, or no new leader within --wait."
)


_COMMAND = observer_command(
    "step-down",
    _DESCRIPTION,
    ["to", "wait"],
    exit_codes={
        ExitCode.OK: "a new leader is first in the queue, or the one named by --to already led",
        ExitCode.OPERATION_FAILED: "no leader, no such participant, or no new leader within --wait",
        ExitCode.ZK_REFUSED: "the election's ACL does not let us (not an operator), or our credentials",
    },
)


class _StepDownError(OperationError):
    """The step-down could not be done as asked (exit code 8)."""


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``election-daemon step-down``."""
    return run_observer_command(_COMMAND, argv, environ, run=_run)


async def _run(options: ObserveOptions, settings: Settings) -> int:
    wait_s: float = settings.get("wait", 30.0)
    to: str | None = settings.get("to")
    if not wait_s > 0:
        raise ConfigError("--wait", f"must be a positive number of seconds, got {wait_s!r}")
    servers, chroot = parse_hosts(options.hosts)
    zk = ZooKeeper.create(
        format_servers(servers),
        chroot=chroot,
        session_timeout_s=options.session_timeout_s,
        tls=options.tls,
        auth=options.auth,
    )
    await zk.start(connect_timeout_s=options.connect_timeout_s)
    try:
        print(await _step_down(zk, options.path, to, wait_s))
    finally:
        await zk.close()
    return ExitCode.OK


async def _step_down(zk: ZooKeeper, path: str, to: str | None, wait_s: float) -> str:
    queue = await read_queue(zk, path)
    if not queue:
        raise _StepDownError(f"nobody leads {path}")
    leader = queue[0]
    target = _target(queue, to) if to is not None else None
    if target is not None and target.node == leader.node:
        return f"{_name(leader)} already leads {path} (token {leader.token})"
    started = time.monotonic()
    try:
        if target is not None:
            await write_handover(zk, path, target.node)
        raw, stat = await zk.get(leader.node)
        await zk.set(leader.node, with_step_down_request(raw, new_request_id()), version=stat.version)
    except NoAuthError:
        raise NoAuthError(
            f"{path}: the ACL does not let this session ask {_name(leader)} to step down: "
            "give the --auth-file of an operator (an --acl-operator id of the election)"
        ) from None
    new = await _wait_for_new_leader(zk, path, leader, target, started + wait_s)
    took_s = time.monotonic() - started
    return (
        f"{path}: {_name(leader)} (token {leader.token}) -> {_name(new)} (token {new.token}) "
        f"in {took_s:.3f} s"
    )


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
