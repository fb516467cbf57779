"""The daemon's HTTP endpoints: probes for orchestrators and load balancers, status and metrics.

Served by aiohttp on the daemon's own event loop; no handler blocks it.

- ``GET /liveness``: 200 while the process is healthy: its event loop answers (this very
  request) and its election has not failed for good. ZooKeeper's state does not count: a
  Kubernetes liveness probe here does not restart every pod during a ZooKeeper outage.
- ``GET /readiness`` (and ``GET /health``, its older name): 200 while the ZooKeeper session is
  connected with a valid lease, else 503.
- ``GET /leader``: 200 while this participant leads (lease checked now), else 503.
- ``GET /follower``: 200 while ready and not leading, else 503.
- ``GET /status``: this participant's view as JSON, including who leads according to ZooKeeper.
- ``GET /metrics``: the Prometheus metrics, in the format the scraper's ``Accept`` asks for.

HEAD works wherever GET does. JSON bodies end with a newline, and no response may be cached:
a cached ``/leader`` would route traffic to a former leader.

Limits (:mod:`._httpguard`): a connection must send its request within a few seconds, at most
``max_connections`` are served at once, and at most a few ``/status`` lookups run at once
(the others get 503 at once rather than queueing up reads of ZooKeeper).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from election_daemon.daemon import jsonout
from election_daemon.daemon.httpguard import HEADER_TIMEOUT_S, MAX_CONNECTIONS, GuardedRunner, bind_error
from election_daemon.errors import ConfigError, ElectionError
from election_daemon.library.election import Election
from election_daemon.library.session import Session

__all__ = ["EndpointView", "Endpoints", "start_endpoints"]

# /status asks ZooKeeper who leads; a session in trouble must not hold the answer up.
_LEADER_LOOKUP_TIMEOUT_S = 1.0
# Handlers finish within the lookup timeout; closing never waits much longer for them.
_SHUTDOWN_TIMEOUT_S = 2.0
_NO_STORE = {"Cache-Control": "no-store"}
# /status lookups in flight at once; more get 503 at once.
_MAX_STATUS_LOOKUPS = 8


class EndpointView(Protocol):
    """What the endpoints show: the daemon satisfies it."""

    @property
    def election(self) -> Election: ...

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The registry ``/metrics`` serves."""
        ...

    @property
    def child_pid(self) -> int | None:
        """The leader-only command's pid while it runs, else ``None``."""
        ...


class Endpoints:
    """The running HTTP server: where it listens, and :meth:`close`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        """The port actually bound (the one the system chose when asked for port 0)."""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop listening, finish the requests in progress and close every connection."""
        await self._runner.cleanup()


async def start_endpoints(
    view: EndpointView,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    header_timeout_s: float = HEADER_TIMEOUT_S,
) -> Endpoints:
    """Serve the endpoints of ``view`` on ``host:port`` (port 0: any free port).

    A connection that sends no complete request within ``header_timeout_s`` is closed; beyond
    ``max_connections`` at once, a connection gets 503 and is closed.

    Raises :class:`ConfigError` (field ``--http``) if the address cannot be listened on:
    already in use, not local, not permitted or not resolvable.
    """
    routes = _Routes(view)
    app = web.Application()
    app.router.add_get("/liveness", routes.liveness)
    app.router.add_get("/readiness", routes.readiness)
    app.router.add_get("/health", routes.readiness)
    app.router.add_get("/leader", routes.leader)
    app.router.add_get("/follower", routes.follower)
    app.router.add_get("/status", routes.status)
    app.router.add_get("/metrics", routes.metrics)
    # No access log: load balancers poll every second or so, and the daemon logs transitions.
    runner = GuardedRunner(
        app,
        max_connections=max_connections,
        header_timeout_s=header_timeout_s,
        access_log=None,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigError("--http", f"cannot listen on {where}: {bind_error(e)}") from None
    # A name resolving to several addresses binds each; with port 0 the first one's port is shown.
    bound_port: int = runner.addresses[0][1]
    return Endpoints(runner, host, bound_port)


class _Routes:
    def __init__(self, view: EndpointView) -> None:
        self._view = view
        self._status_lookups = 0

    async def liveness(self, _request: web.Request) -> web.Response:
        election = self._view.election
        alive = election.failure is None
        return _json({"alive": alive, "state": election.state.value}, ok=alive)

    async def readiness(self, _request: web.Request) -> web.Response:
        session = _session(self._view.election)
        healthy = session is not None and session.is_connected()
        return _json({"healthy": healthy, "session": session.state.value if session else None}, ok=healthy)

    async def follower(self, _request: web.Request) -> web.Response:
        election = self._view.election
        session = _session(election)
        healthy = session is not None and session.is_connected()
        following = healthy and not election.is_leader
        return _json({"follower": following, "healthy": healthy, "state": election.state.value}, ok=following)

    async def leader(self, _request: web.Request) -> web.Response:
        election = self._view.election
        term = election.term if election.is_leader else None
        leading = term is not None
        return _json({"leader": leading, "token": term.token if term is not None else None}, ok=leading)

    async def status(self, _request: web.Request) -> web.Response:
        if self._status_lookups >= _MAX_STATUS_LOOKUPS:
            return _json({"error": "too many /status requests at once"}, ok=False)
        self._status_lookups += 1
        try:
            return await self._status()
        finally:
            self._status_lookups -= 1

    async def _status(self) -> web.Response:
        election = self._view.election
        try:
            leader = await asyncio.wait_for(election.leader(), _LEADER_LOOKUP_TIMEOUT_S)
        except Exception:  # timed out, ZooKeeper trouble, or whatever a hostile queue caused
            leader = None
        # Everything below is read in one go after the lookup, so it is one consistent view.
        term = election.term
        session = _session(election)
        pid = self._view.child_pid
        doc = {
            "id": election.identity,
            "path": election.path,
            "state": election.state.value,
            "is_leader": election.is_leader,
            "node": election.node,
            "term": None
            if term is None
            else {"token": term.token, "node": term.node, "started_at": _iso_utc(term.started_at)},
            "leader": leader.as_dict() if leader is not None else None,
            "session": None
            if session is None
            else {
                "id": f"0x{session.session_id:x}" if session.session_id else None,
                "state": session.state.value,
                "negotiated_timeout_s": session.negotiated_timeout_s,
                "lease_remaining_s": round(session.lease_remaining_s(), 3),
            },
            "child": {"running": pid is not None, "pid": pid},
        }
        return _json(doc, ok=True)

    async def metrics(self, request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(
            body=encode(self._view.metrics_registry), headers={"Content-Type": content_type, **_NO_STORE}
        )


def _session(election: Election) -> Session | None:
    try:
        return election.session
    except ElectionError:  # not started
        return None


def _json(doc: dict[str, Any], *, ok: bool) -> web.Response:
    return web.json_response(doc, status=200 if ok else 503, dumps=_dumps, headers=_NO_STORE)


def _dumps(doc: Any) -> str:
    # Strict: participant data comes from whoever can write under the path.
    return jsonout.dumps(doc) + "\n"


def _iso_utc(timestamp: float) -> str:
    """The log schema's timestamp format."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
