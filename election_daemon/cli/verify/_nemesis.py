"""The nemesis: the faults a verify run injects, each with a target, an injection, a hold and a heal.

Every fault is logged as three records: ``start`` (when the fault takes effect), ``heal``
(when healing begins) and ``healed`` (when it is done: a restarted server serves again).
Leader faults pick the participant leading at that moment; ZooKeeper faults need a local
ensemble (``needs_servers``) and pick servers by what the leader is connected to. A fault may
also log what it did, one ``act`` record per action (``hostile``'s writes and deletions).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import random
import ssl
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from election_daemon.cli.verify._fleet import Fleet, Participant
from election_daemon.cli.verify._history import Record, Recorder
from election_daemon.errors import NoNodeError, ZooKeeperError
from election_daemon.library._zk import ZooKeeper
from election_daemon.library.candidacy import with_step_down_request
from election_daemon.library.limits import format_servers, parse_hosts
from election_daemon.library.recipes import parse_contender
from election_daemon.library.security import DigestAuth
from election_daemon.testing import ZooKeeperEnsemble, ZooKeeperServer

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
    admin_tls: ssl.SSLContext | None = None
    """The operator's TLS context (None: plain connections)."""
    admin_auth: tuple[DigestAuth, ...] = ()
    """The deletions' and junk writes' credentials: the super user with ``--tls`` (the ACL model
    lets no operator delete a node or write the path), else ``--auth-file``'s."""
    admin_identity: str = "anonymous"
    """Who ``admin_auth`` is, as the record names it (``superuser``, ``digest:USER``, ...)."""
    operator_auth: tuple[DigestAuth, ...] | None = None
    """The step-down requests' credentials, an operator of the election's ACL (None: ``admin_auth``)."""
    operator_identity: str | None = None
    """Who ``operator_auth`` is, as the record names it (None: ``admin_identity``)."""

    @property
    def step_down_identity(self) -> str:
        return self.admin_identity if self.operator_identity is None else self.operator_identity

    def identities(self) -> dict[str, str]:
        """Which identity each operator fault (and ``hostile``'s step-down requests) acts as."""
        return {
            "delete-node": self.admin_identity,
            "delete-path": self.admin_identity,
            "hostile": self.admin_identity,
            "hostile.step_down": self.step_down_identity,
        }


@dataclass(slots=True)
class Target:
    description: str
    participant: Participant | None = None
    servers: tuple[ZooKeeperServer, ...] = ()
    child_pgid: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """Logged with the fault's ``start`` record once injected."""
    hold_s: float = 0.0
    """How long the fault is held (set before injection)."""
    acts: list[dict[str, Any]] = field(default_factory=list)
    """What the fault did, one ``act`` record each (``t`` is monotonic)."""
    heal_details: dict[str, Any] = field(default_factory=dict)
    """Logged with the fault's ``heal`` record once healed."""


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


class _RollingRestart(_ServerFault):
    """Restart every follower server in turn (stopped, started, serving again): routine
    maintenance that a leader riding on its lease must not notice. The ZooKeeper leader's own
    restart is ``zk-kill-leader``. The checker calls any stop of the command a bounce."""

    name = "zk-rolling-restart"
    holds = (0.5, 0.5, 1.0)

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        assert world.ensemble is not None
        try:
            leader = await asyncio.to_thread(world.ensemble.leader, timeout_s=5.0)
        except TimeoutError:
            return None
        followers = tuple(server for server in world.ensemble.servers if server is not leader)
        return Target(",".join(f"zk{server.myid}" for server in followers), servers=followers)

    async def inject(self, world: World, target: Target) -> None:
        ensemble = world.ensemble
        assert ensemble is not None
        for server in target.servers:
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start, timeout_s=_SERVER_START_S)
            await asyncio.to_thread(ensemble.wait_quorum)

    async def heal(self, world: World, target: Target) -> None:
        pass  # every server serves again already


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
        target.details["identity"] = world.admin_identity
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
        target.details["identity"] = world.admin_identity
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


# -- hostile: a misbehaving client with write access to the election path ---------------------

_HOSTILE_DEPTH = 1500
_HOSTILE_BLOB_BYTES = 900 * 1024
# The acts are spread over this share of the hold; the rest is for the last act to land.
_HOSTILE_SPREAD = 0.8
_JUNK: dict[str, bytes] = {
    "deep": b'{"id":"x","a":' + b"[" * _HOSTILE_DEPTH + b"]" * _HOSTILE_DEPTH + b"}",
    "nan": b'{"id":"x","data":NaN}',
    "inf": b'{"id":"x","data":1e999}',
    "bad_utf8": b'{"id":"\xff\xfe\x80","data":"\xc3\x28"}',
    "blob": b'{"id":"x","data":"' + b"x" * _HOSTILE_BLOB_BYTES + b'"}',
}
_MALFORMED_STEP_DOWNS: dict[str, bytes] = {
    "not_an_object": b'{"step_down":"now"}',
    "empty_request": b'{"step_down":{"request":""}}',
    "long_request": b'{"step_down":{"request":"' + b"r" * 65 + b'"}}',
    "truncated": b'{"id":"x","step_down":{"request":"r"}',
}
# What one hostile fault does, in a seeded random order: every action at least once.
_HOSTILE_PLAN: tuple[tuple[str, str], ...] = (
    *(("junk_node", kind) for kind in _JUNK),
    ("junk_path", "deep"),
    ("junk_path", "blob"),
    ("junk_path", "bad_utf8"),
    ("look_alike", "priority"),
    ("look_alike", "first"),
    ("forged_ephemeral", "first"),
    ("foreign", "kazoo"),
    ("foreign", "curator"),
    ("foreign", "zookeeper"),
    ("handover", "look_alike"),
    ("handover", "missing"),
    ("handover", "not_a_string"),
    ("handover", "elsewhere"),
    ("handover", "truncated"),
    *(("bad_step_down", kind) for kind in _MALFORMED_STEP_DOWNS),
    ("step_down", "well_formed"),
    ("delete_node", "random"),
    ("delete_node", "random"),
)
_DISRUPTIVE = frozenset({"step_down", "delete_node"})
"""Acts that end a term by design (an operator's deletion, a well-formed step-down request)."""


class _NoTarget(Exception):
    """No participant's node to act on at the moment."""


class _Hostile(Fault):
    """A misbehaving client with write access to the election path (open ACLs), on its own session.

    During the hold it does every act of ``_HOSTILE_PLAN`` once, in a seeded order, spread
    over the hold: junk and oversized payloads in participants' nodes and in the path's data,
    persistent look-alikes and foreign-recipe contenders, an ephemeral node forged to sort
    first (created after the leader's), bogus handover and step-down requests, one of them
    well formed (the leader steps down: an operator's request), deletions of participants'
    nodes. The step-down request is written on a second session as the operator (with ``--tls``:
    the ACL's operator; an operator may do nothing else), the rest as ``admin_identity``. Heal
    removes the junk: the persistent nodes deleted, the participants' nodes given
    back their data (where still there, unchanged since), the path's data cleared, the session
    closed (its forged node goes with it).
    """

    name = "hostile"
    holds = (1.5, 1.0, 2.0)

    def __init__(self) -> None:
        self._rng = random.Random()
        self._zk: ZooKeeper | None = None
        self._operator: ZooKeeper | None = None
        self._guids: dict[str, str] = {}
        self._created: list[str] = []
        self._originals: dict[str, tuple[bytes, int]] = {}
        """Participants' nodes we wrote: their data before, and their version after our last write."""

    async def choose(self, world: World, rng: random.Random) -> Target | None:
        leader = world.fleet.leader()
        if leader is None:
            return None
        self._rng = random.Random(rng.getrandbits(64))
        return Target(world.path, details={"leader": leader.name, "leader_node": leader.node})

    async def inject(self, world: World, target: Target) -> None:
        rng = self._rng
        self._guids = {
            key: f"{rng.getrandbits(128):032x}" for key in ("priority", "first", "forged", "kazoo")
        }
        self._guids["curator"] = str(uuid.UUID(int=rng.getrandbits(128)))
        plan = list(_HOSTILE_PLAN)
        rng.shuffle(plan)
        self._zk = zk = await _connect(world)
        target.details["identity"] = world.admin_identity
        target.details["step_down_identity"] = world.step_down_identity
        try:
            if world.operator_auth is not None:
                try:
                    self._operator = await _connect(world, auth=world.operator_auth)
                except ZooKeeperError as e:  # its step-down is then counted as failed
                    target.details["operator_session"] = f"failed: {type(e).__name__}"
            await self._act_all(world, target, zk, plan)
        finally:
            operator, self._operator = self._operator, None
            if operator is not None:
                await operator.close()

    async def _act_all(
        self, world: World, target: Target, zk: ZooKeeper, plan: list[tuple[str, str]]
    ) -> None:
        pace_s = _HOSTILE_SPREAD * target.hold_s / len(plan)
        done: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        no_target: Counter[str] = Counter()
        for action, variant in plan:
            t = time.monotonic()
            act: dict[str, Any] = {
                "action": action,
                "variant": variant,
                "identity": world.step_down_identity if action == "step_down" else world.admin_identity,
            }
            try:
                act["node"] = await asyncio.wait_for(
                    self._act(world, zk, action, variant), world.session_timeout_s
                )
            except _NoTarget:
                no_target[action] += 1
                act["result"] = "no_target"
            except (ZooKeeperError, TimeoutError) as e:
                failed[action] += 1
                act["result"] = f"failed: {type(e).__name__}"
            else:
                done[action] += 1
                act["result"] = "done"
                act["disrupts"] = action in _DISRUPTIVE
            target.acts.append({"t": t, **act})
            await asyncio.sleep(max(0.0, t + pace_s - time.monotonic()))
        target.details["acts"] = dict(sorted(done.items()))
        if failed:
            target.details["failed"] = dict(sorted(failed.items()))
        if no_target:
            target.details["no_target"] = dict(sorted(no_target.items()))

    async def heal(self, world: World, target: Target) -> None:
        zk, self._zk = self._zk, None
        if zk is None:
            return
        cleanup: Counter[str] = Counter()
        try:
            await self._clean(world, zk, cleanup)
        finally:
            await zk.close()  # the forged ephemeral node goes with the session
        if cleanup["failed"]:
            # The session broke meanwhile: clean again from a new one.
            cleanup["failed"] = 0
            try:
                async with _admin(world) as fresh:
                    await self._clean(world, fresh, cleanup)
            except ZooKeeperError:
                cleanup["failed"] += 1
        target.heal_details["cleanup"] = dict(sorted((k, n) for k, n in cleanup.items() if n))

    async def _clean(self, world: World, zk: ZooKeeper, cleanup: Counter[str]) -> None:
        timeout_s = world.session_timeout_s

        async def attempt(what: str, action: Awaitable[Any]) -> None:
            try:
                await asyncio.wait_for(action, timeout_s)
            except NoNodeError:
                cleanup[f"{what}_already_gone"] += 1
            except (ZooKeeperError, TimeoutError):
                cleanup["failed"] += 1
            else:
                cleanup[what] += 1

        for node in list(self._created):
            await attempt("deleted", zk.delete(node))
            if not cleanup["failed"]:
                self._created.remove(node)
        for node, (raw, version) in list(self._originals.items()):
            # Only if nobody wrote it since: a participant's own write is not ours to undo.
            await attempt("restored", zk.set(node, raw, version=version))
        self._originals.clear()
        await attempt("path_cleared", zk.set(world.path, b""))

    async def _participants(self, world: World, zk: ZooKeeper) -> list[str]:
        """The participants' nodes (live contenders not of our session), lowest sequence first."""
        found = []
        for name in await zk.children(world.path):
            contender = parse_contender(name)
            if contender is None:
                continue
            stat = await zk.exists(f"{world.path}/{name}")
            if stat is not None and stat.ephemeral_owner not in (0, zk.session_id):
                found.append((contender.sequence, f"{world.path}/{name}"))
        return [node for _, node in sorted(found)]

    async def _leader_node(self, world: World, zk: ZooKeeper) -> str:
        nodes = await self._participants(world, zk)
        leader = world.fleet.leader()
        if leader is not None and leader.node in nodes:
            return leader.node
        if not nodes:
            raise _NoTarget
        return nodes[0]

    async def _random_node(self, world: World, zk: ZooKeeper) -> str:
        nodes = await self._participants(world, zk)
        if not nodes:
            raise _NoTarget
        return self._rng.choice(nodes)

    async def _overwrite(self, zk: ZooKeeper, node: str, data: bytes) -> None:
        raw, _ = await zk.get(node)
        stat = await zk.set(node, data)
        original = self._originals.get(node, (raw, 0))[0]
        self._originals[node] = (original, stat.version)

    def _name(self, key: str) -> str:
        guid = self._guids[key]
        return {
            "priority": f"_c_{guid}_p5-0000000099",
            "first": f"_c_{guid}-0000000000",
            "forged": f"_c_{guid}-0000000000",
            "kazoo": f"{guid}__lock__0000000001",
            "curator": f"_c_{guid}-latch-0000000001",
        }[key]

    async def _create(self, zk: ZooKeeper, node: str, data: bytes, *, ephemeral: bool) -> None:
        await zk.client.create(node, data=data, ephemeral=ephemeral)
        if not ephemeral:
            self._created.append(node)

    async def _act(self, world: World, zk: ZooKeeper, action: str, variant: str) -> str | None:  # noqa: PLR0911 (one return per action)
        """Do one act; the node it touched, if a participant's or created."""
        path = world.path
        if action == "junk_node":
            node = await self._random_node(world, zk)
            await self._overwrite(zk, node, _JUNK[variant])
            return node
        if action == "junk_path":
            await zk.set(path, _JUNK[variant])
            return None
        if action in ("look_alike", "forged_ephemeral"):
            node = f"{path}/{self._name('forged' if action == 'forged_ephemeral' else variant)}"
            await self._create(zk, node, b'{"id":"intruder"}', ephemeral=action == "forged_ephemeral")
            return node
        if action == "foreign":
            name = "n_0000000001" if variant == "zookeeper" else self._name(variant)
            await self._create(zk, f"{path}/{name}", b"intruder", ephemeral=False)
            return f"{path}/{name}"
        if action == "handover":
            await zk.set(path, self._handover(path, variant))
            return None
        if action == "bad_step_down":
            node = await self._leader_node(world, zk)
            await self._overwrite(zk, node, _MALFORMED_STEP_DOWNS[variant])
            return node
        if action == "step_down":
            if world.operator_auth is not None and self._operator is None:
                raise ZooKeeperError("no operator session")
            node = await self._leader_node(world, zk)
            raw, _ = await zk.get(node)
            await self._overwrite(
                zk if self._operator is None else self._operator,
                node,
                with_step_down_request(self._originals.get(node, (raw, 0))[0], "r"),
            )
            return node
        if action == "delete_node":
            node = await self._random_node(world, zk)
            await zk.delete(node)
            return node
        raise AssertionError(action)

    def _handover(self, path: str, variant: str) -> bytes:
        if variant == "truncated":
            return b'{"handover_to":"' + path.encode() + b"/"
        to: object = {
            "look_alike": f"{path}/{self._name('priority')}",
            "missing": f"{path}/_c_{'0' * 32}-0000009999",
            "not_a_string": 7,
            "elsewhere": f"/elsewhere/{self._name('first')}",
        }[variant]
        return json.dumps({"handover_to": to, "request": "x"}).encode()


async def _connect(world: World, *, auth: tuple[DigestAuth, ...] | None = None) -> ZooKeeper:
    """A session for operator actions: as ``auth`` (default: ``world.admin_auth``)."""
    servers, chroot = parse_hosts(world.admin_hosts)
    zk = ZooKeeper.create(
        format_servers(servers),
        chroot=chroot,
        session_timeout_s=world.session_timeout_s,
        tls=world.admin_tls,
        auth=world.admin_auth if auth is None else auth,
    )
    await zk.start(connect_timeout_s=_ADMIN_CONNECT_S)
    return zk


@contextlib.asynccontextmanager
async def _admin(world: World) -> AsyncIterator[ZooKeeper]:
    zk = await _connect(world)
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
        _RollingRestart,
        _QuorumLoss,
        _Isolate,
        _DeletePath,
        _DeleteNode,
        _Slow,
        _Hostile,
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
        target.hold_s = hold_s
        await fault.inject(self.world, target)
        # The details are known once injected (a node already gone, attempts, ...).
        start.update(target.details)
        await asyncio.sleep(max(0.0, start["t"] + hold_s - time.monotonic()))
        for act in target.acts:
            self.recorder.add(act.pop("t"), "nemesis", "act", **common, **act)
        heal = self.recorder.add(time.monotonic(), "nemesis", "heal", **common)
        await fault.heal(self.world, target)
        heal.update(target.heal_details)
        self.recorder.add(time.monotonic(), "nemesis", "healed", **common)
        return start


def applicable_faults(*, local_servers: bool) -> Sequence[str]:
    """Every fault name that a run with (or without) control of the servers can inject."""
    return [name for name in FAULTS if local_servers or name not in SERVER_FAULTS]
