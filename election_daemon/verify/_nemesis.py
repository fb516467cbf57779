"""The nemesis: the faults a verify run injects, each with a target, an injection, a hold and a heal.

Every fault is logged as three records: ``start`` (when the fault takes effect), ``heal``
(when healing begins) and ``healed`` (when it is done: a restarted server serves again).
Leader faults pick the participant leading at that moment; ZooKeeper faults need a local
ensemble (``needs_servers``) and pick servers by what the leader is connected to.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from election_daemon._zk import ZooKeeper
from election_daemon.config import format_servers, parse_hosts
from election_daemon.errors import NoNodeError, ZooKeeperError
from election_daemon.testing import ZooKeeperEnsemble, ZooKeeperServer

from ._fleet import Fleet, Participant
from ._history import Record, Recorder

__all__ = ["FAULTS", "SERVER_FAULTS", "Fault", "Nemesis", "World", "applicable_faults"]

_ADMIN_CONNECT_S = 10.0
_DELETE_ATTEMPTS = 50
_SERVER_START_S = 60.0
# After a pause the command is resumed this long before its daemon, as when only the daemon
# stalls: a stale command then writes, and the register must refuse it.
_CHILD_LEAD_S = 0.2


@dataclass(slots=True)
class World:
    """What faults act on."""

    fleet: Fleet
    ensemble: ZooKeeperEnsemble | None
    admin_hosts: str
    """A connect string that reaches ZooKeeper directly, for operator actions."""
    path: str
    session_timeout_s: float


@dataclass(slots=True)
class Target:
    description: str
    participant: Participant | None = None
    servers: tuple[ZooKeeperServer, ...] = ()
    child_pgid: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Fault(abc.ABC):
    """One kind of fault. ``holds`` are multiples of T: the first is --quick's, soaks pick any."""

    name: ClassVar[str]
    needs_servers: ClassVar[bool] = False
    holds: ClassVar[tuple[float, ...]] = (0.0,)

    @abc.abstractmethod
    async def choose(self, world: World, rng: random.Random) -> Target | None:
        """The target now, or None if there is none (no leader)."""

    @abc.abstractmethod
    async def inject(self, world: World, target: Target) -> None: ...

    @abc.abstractmethod
    async def heal(self, world: World, target: Target) -> None:
        """Undo the fault."""


class _OperatorAction(Fault):
    """A fault that is one act, with nothing to undo: the election must repair itself."""

    async def heal(self, world: World, target: Target) -> None:
        return


def _leader_target(world: World) -> Target | None:
    leader = world.fleet.leader()
    if leader is None:
        return None
    return Target(
        leader.name,
        participant=leader,
        child_pgid=leader.child_pgid,
        details={"daemon_pid": leader.pid, "child_pid": leader.child_pgid, "token": leader.token},
    )


def _connected_server(world: World, participant: Participant) -> ZooKeeperServer | None:
    """The server the participant's session is on: the one its proxies hold a connection to."""
    assert world.ensemble is not None
    connected = [
        server
        for proxy, server in zip(participant.proxies, world.ensemble.servers, strict=True)
        if proxy.connection_count > 0
    ]
    return connected[0] if len(connected) == 1 else None


class _Kill(Fault):
    """SIGKILL the leader daemon's process group; heal restarts it."""

    name = "kill"
    holds = (0.0, 0.5, 1.0)

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        return _leader_target(world)

    async def inject(self, world: World, target: Target) -> None:
        assert target.participant is not None
        await world.fleet.kill(target.participant)

    async def heal(self, world: World, target: Target) -> None:
        assert target.participant is not None
        await world.fleet.start(target.participant)


class _Stop(_Kill):
    """SIGTERM the leader daemon (it hands over); heal restarts it."""

    name = "stop"

    async def inject(self, world: World, target: Target) -> None:
        participant = target.participant
        assert participant is not None
        if not await world.fleet.terminate(participant, world.session_timeout_s + 10.0):
            target.details["killed_after_timeout"] = True
            await world.fleet.kill(participant)


class _Cut(Fault):
    """Silence every connection of the leader to ZooKeeper (its proxies); heal restores them."""

    name = "cut"
    holds = (1.5, 0.5, 2.0)

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        return _leader_target(world)

    async def inject(self, world: World, target: Target) -> None:
        assert target.participant is not None
        for proxy in target.participant.proxies:
            proxy.cut()

    async def heal(self, world: World, target: Target) -> None:
        assert target.participant is not None
        for proxy in target.participant.proxies:
            proxy.restore()


class _Slow(_Cut):
    """Delay everything between the leader and ZooKeeper; heal removes the delay."""

    name = "slow"
    holds = (2.0, 1.0, 3.0)
    latencies = (0.1, 0.05)

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        target = _leader_target(world)
        if target is not None:
            target.details["latency_s"] = round(rng.choice(self.latencies) * world.session_timeout_s, 3)
        return target

    async def inject(self, world: World, target: Target) -> None:
        assert target.participant is not None
        for proxy in target.participant.proxies:
            proxy.set_latency(float(target.details["latency_s"]))

    async def heal(self, world: World, target: Target) -> None:
        assert target.participant is not None
        for proxy in target.participant.proxies:
            proxy.set_latency(0.0)


class _Pause(Fault):
    """SIGSTOP the leader daemon and its command for longer than T; heal sends SIGCONT, command first."""

    name = "pause"
    holds = (1.5, 2.5)

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        return _leader_target(world)

    async def inject(self, world: World, target: Target) -> None:
        assert target.participant is not None
        world.fleet.pause(target.participant)

    async def heal(self, world: World, target: Target) -> None:
        assert target.participant is not None
        await world.fleet.resume(target.participant, target.child_pgid, child_lead_s=_CHILD_LEAD_S)


class _ServerFault(Fault):
    """Kill servers, then restart them (waiting until they serve)."""

    needs_servers = True
    holds = (1.0, 0.5, 2.0)

    async def inject(self, world: World, target: Target) -> None:
        for server in target.servers:
            await asyncio.to_thread(server.kill)

    async def heal(self, world: World, target: Target) -> None:
        for server in target.servers:
            await asyncio.to_thread(server.start, timeout_s=_SERVER_START_S)


class _KillConnected(_ServerFault):
    """Kill the ZooKeeper server the leader is connected to."""

    name = "zk-kill-connected"

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        target = _leader_target(world)
        if target is None or target.participant is None:
            return None
        server = _connected_server(world, target.participant)
        if server is None:
            return None
        target.servers = (server,)
        target.description = f"zk{server.myid} (of {target.participant.name})"
        return target


class _KillLeader(_ServerFault):
    """Kill the ZooKeeper leader server."""

    name = "zk-kill-leader"

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        assert world.ensemble is not None
        try:
            server = await asyncio.to_thread(world.ensemble.leader, timeout_s=5.0)
        except TimeoutError:
            return None
        return Target(f"zk{server.myid}", servers=(server,))


class _QuorumLoss(_ServerFault):
    """Stop a majority of the servers (the leader's among them), then start them again."""

    name = "quorum-loss"
    holds = (1.5, 1.0, 2.0)

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        ensemble = world.ensemble
        assert ensemble is not None
        leader = world.fleet.leader()
        first = _connected_server(world, leader) if leader is not None else None
        others = [server for server in ensemble.servers if server is not first]
        majority = ensemble.size // 2 + 1
        chosen = ([first] if first is not None else []) + rng.sample(others, majority - (first is not None))
        return Target(",".join(f"zk{server.myid}" for server in chosen), servers=tuple(chosen))

    async def inject(self, world: World, target: Target) -> None:
        for server in target.servers:
            await asyncio.to_thread(server.stop)


class _Isolate(Fault):
    """Cut the leader's ZooKeeper server off from the other servers; heal reconnects it."""

    name = "zk-isolate"
    needs_servers = True
    holds = (1.5, 1.0, 2.0)

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        assert world.ensemble is not None
        leader = world.fleet.leader()
        server = _connected_server(world, leader) if leader is not None else None
        if server is None:
            server = rng.choice(world.ensemble.servers)
        return Target(f"zk{server.myid}", servers=(server,))

    async def inject(self, world: World, target: Target) -> None:
        assert world.ensemble is not None
        await asyncio.to_thread(world.ensemble.isolate, target.servers[0])

    async def heal(self, world: World, target: Target) -> None:
        assert world.ensemble is not None
        await asyncio.to_thread(world.ensemble.heal)
        await asyncio.to_thread(target.servers[0].wait_serving, _SERVER_START_S)


class _DeleteNode(_OperatorAction):
    """An operator deletes the leader's node."""

    name = "delete-node"

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        target = _leader_target(world)
        if target is None or target.participant is None or target.participant.node is None:
            return None
        target.details["node"] = target.participant.node
        return target

    async def inject(self, world: World, target: Target) -> None:
        async with _admin(world) as zk:
            try:
                await zk.delete(str(target.details["node"]))
            except NoNodeError:
                target.details["already_gone"] = True


class _DeletePath(_OperatorAction):
    """An operator deletes the election path, contenders' nodes and all."""

    name = "delete-path"

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        return Target(world.path)

    async def inject(self, world: World, target: Target) -> None:
        # Contenders re-create the path and rejoin at once: delete until it is gone.
        async with _admin(world) as zk:
            for attempt in range(1, _DELETE_ATTEMPTS + 1):
                try:
                    for child in await zk.children(world.path):
                        with contextlib.suppress(NoNodeError):
                            await zk.delete(f"{world.path}/{child}")
                    await zk.delete(world.path)
                except NoNodeError:
                    pass
                except ZooKeeperError:
                    continue  # a contender re-joined in between: not empty
                target.details["attempts"] = attempt
                return
            target.details["attempts"] = _DELETE_ATTEMPTS
            target.details["deleted"] = False


@contextlib.asynccontextmanager
async def _admin(world: World) -> AsyncIterator[ZooKeeper]:
    servers, chroot = parse_hosts(world.admin_hosts)
    zk = ZooKeeper.create(format_servers(servers), chroot=chroot, session_timeout_s=world.session_timeout_s)
    await zk.start(connect_timeout_s=_ADMIN_CONNECT_S)
    try:
        yield zk
    finally:
        await zk.close()


FAULTS: dict[str, type[Fault]] = {
    fault.name: fault
    for fault in (
        _Kill,
        _Stop,
        _Cut,
        _Pause,
        _KillConnected,
        _KillLeader,
        _QuorumLoss,
        _Isolate,
        _DeletePath,
        _DeleteNode,
        _Slow,
    )
}
"""Every fault, by the name ``--faults-from`` takes."""

SERVER_FAULTS = frozenset(name for name, fault in FAULTS.items() if fault.needs_servers)
"""The faults that need control of the servers (not available with ``--hosts``)."""


class Nemesis:
    """Injects faults one at a time and records them."""

    def __init__(self, world: World, recorder: Recorder, rng: random.Random, *, quick: bool) -> None:
        self.world = world
        self.recorder = recorder
        self.rng = rng
        self.quick = quick
        self._ids = 0

    async def inject(self, name: str, *, choose_timeout_s: float) -> Record | None:
        """Inject one fault named ``name``, hold it, heal it; its start record, or None if it found
        no target in time."""
        fault = FAULTS[name]()
        deadline = time.monotonic() + choose_timeout_s
        while (target := await fault.choose(self.world, self.rng)) is None:
            if time.monotonic() > deadline:
                self.recorder.add(time.monotonic(), "nemesis", "skipped", fault=name, reason="no target")
                return None
            await asyncio.sleep(0.05)
        hold = fault.holds[0] if self.quick else self.rng.choice(fault.holds)
        hold_s = round(hold * self.world.session_timeout_s, 3)
        self._ids += 1
        common = {"fault": name, "fault_id": self._ids, "target": target.description}
        start = self.recorder.add(time.monotonic(), "nemesis", "start", hold_s=hold_s, **common)
        await fault.inject(self.world, target)
        # The details are known once injected (a node already gone, attempts, ...).
        start.update(target.details)
        await asyncio.sleep(max(0.0, start["t"] + hold_s - time.monotonic()))
        self.recorder.add(time.monotonic(), "nemesis", "heal", **common)
        await fault.heal(self.world, target)
        self.recorder.add(time.monotonic(), "nemesis", "healed", **common)
        return start


def applicable_faults(*, local_servers: bool) -> Sequence[str]:
    """Every fault name that a run with (or without) control of the servers can inject."""
    return [name for name in FAULTS if local_servers or name not in SERVER_FAULTS]
