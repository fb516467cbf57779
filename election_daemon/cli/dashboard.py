"""The ``dashboard`` subcommand: a live web page of one election, pushed by server-sent events.

``election-daemon dashboard --hosts HOSTS --path PATH [--listen HOST:PORT]`` observes the
election (it joins nothing) and serves:

- ``/``: a self-contained page (its script and style come from this server only, under a
  strict Content-Security-Policy) showing the leader, the participants and recent changes;
- ``/events``: the state as server-sent events, one ``data:`` line of JSON per update;
- ``/api/state``: the same state as one JSON object.

Limits: a connection must send its request within a few seconds, at most 64 connections and
16 event streams at once, and a request whose ``Host`` is not this server's (an IP address,
``localhost``, the ``--listen`` host or an ``--allow-host`` name) gets 403: a web page whose
name an attacker re-points at this machine (DNS rebinding) cannot read the dashboard.

The state is ``Snapshot.as_dict()`` (``leader_for_s`` as of the moment it is sent) plus
``takeover_seen`` (false: ``leader_for_s`` is an upper bound, see ``Snapshot``), ``connected``
(false: ZooKeeper is out of reach and this is the last known state) and ``history``: the last
leader changes the dashboard saw, newest first (``LeaderChange.as_dict()``).
"""

from __future__ import annotations

import asyncio
import collections
import importlib.resources
import ipaddress
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from election_daemon.cli.observe import (
    ObserveOptions,
    observer_command,
    run_observer_command,
    until_interrupted,
)
from election_daemon.cli.options import PROG, Settings
from election_daemon.daemon import jsonout
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.httpguard import HEADER_TIMEOUT_S, MAX_CONNECTIONS, GuardedRunner, bind_error
from election_daemon.errors import ConfigError
from election_daemon.library.observer import LeaderChange, Snapshot

__all__ = ["Dashboard", "main"]

_HISTORY_SIZE = 20
# Comment lines keep idle connections open through proxies and reveal departed browsers.
_KEEPALIVE_S = 15.0
_DEFAULT_LISTEN = "127.0.0.1:8080"
MAX_STREAMS = 16
"""Event streams open at once; one more gets 503."""
_PORT = re.compile(r"[0-9]{1,5}")
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_.])?")
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ASSETS = {
    "/": ("dashboard.html", "text/html"),
    "/dashboard.js": ("dashboard.js", "text/javascript"),
    "/dashboard.css": ("dashboard.css", "text/css"),
}


class Dashboard:
    """The web application: feed it snapshots and changes; it pushes them to every page open."""

    def __init__(
        self,
        path: str,
        *,
        history_size: int = _HISTORY_SIZE,
        allowed_hosts: Sequence[str] = (),
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.path = path
        self._allowed_hosts = frozenset({"localhost", *(h.lower().rstrip(".") for h in allowed_hosts)})
        self._max_streams = max_streams
        self._streams = 0
        self._snapshot: Snapshot | None = None
        self._history: collections.deque[LeaderChange] = collections.deque(maxlen=history_size)
        self._updated = asyncio.Event()
        self._closing = False

    def state(self) -> dict[str, Any]:
        """What the page shows, as of now."""
        snapshot = self._snapshot
        if snapshot is None:
            state: dict[str, Any] = {
                "path": self.path,
                "leader": None,
                "leader_for_s": None,
                "participants": [],
            }
        else:
            state = snapshot.as_dict()
            if snapshot.leader_since is not None:
                state["leader_for_s"] = round(max(0.0, time.time() - snapshot.leader_since), 3)
        state["takeover_seen"] = snapshot is not None and snapshot.takeover_seen
        state["connected"] = snapshot is not None and snapshot.connected
        state["history"] = [change.as_dict() for change in reversed(self._history)]
        return state

    def update(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._notify()

    def record(self, change: LeaderChange) -> None:
        self._history.append(change)
        self._notify()

    async def follow(self, snapshots: AsyncIterator[Snapshot], changes: AsyncIterator[LeaderChange]) -> None:
        """Apply an observer's streams until they end."""

        async def take_snapshots() -> None:
            async for snapshot in snapshots:
                self.update(snapshot)

        async def take_changes() -> None:
            async for change in changes:
                self.record(change)

        await asyncio.gather(take_snapshots(), take_changes())

    def _notify(self) -> None:
        # Each waiting stream holds the event of its generation; a new one serves the next.
        self._updated.set()
        self._updated = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_host])
        for route, (name, content_type) in _ASSETS.items():
            app.router.add_get(route, _asset_handler(name, content_type))
        app.router.add_get("/api/state", self._api_state)
        app.router.add_get("/events", self._events)
        app.on_shutdown.append(self._on_shutdown)
        return app

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a request's ``Host`` names this server rather than someone else's domain.

        IP addresses cannot be re-pointed, so they pass; names must be ``localhost`` (or under
        ``.localhost``), the ``--listen`` host or an ``--allow-host`` name. No ``Host`` at all
        (HTTP/1.0 tools) passes: browsers always send one.
        """
        if host_header is None:
            return True
        host = host_header.strip().lower()
        if host.startswith("["):
            return _is_ipv6(host[1 : host.find("]")]) if "]" in host else False
        host = host.rpartition(":")[0] if ":" in host else host
        host = host.rstrip(".")
        if _is_ip(host):
            return True
        return host in self._allowed_hosts or host.endswith(".localhost")

    @web.middleware
    async def _check_host(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self.host_allowed(request.headers.get("Host")):
            return web.Response(
                status=403,
                text="this dashboard answers only to its own address (see --allow-host)\n",
                headers={"Cache-Control": "no-store"},
            )
        return await handler(request)

    async def _api_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state(), dumps=jsonout.dumps, headers={"Cache-Control": "no-store"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self._streams >= self._max_streams:
            return web.Response(
                status=503,
                text="too many event streams open\n",
                headers={"Cache-Control": "no-store", "Retry-After": "5"},
            )
        self._streams += 1
        try:
            return await self._stream(request)
        finally:
            self._streams -= 1

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        try:
            # Taken before each write: an update made while writing is sent next, not lost.
            updated = self._updated
            await response.write(self._event())
            while not self._closing:
                try:
                    async with asyncio.timeout(_KEEPALIVE_S):
                        await updated.wait()
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                updated = self._updated
                if not self._closing:
                    await response.write(self._event())
        except ConnectionError:
            pass  # the browser went away
        return response

    def _event(self) -> bytes:
        # Strict JSON, ASCII only: one line whatever participants wrote into their nodes.
        return f"data: {jsonout.dumps(self.state())}\n\n".encode()

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing = True
        self._notify()


def _asset_handler(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = importlib.resources.files("election_daemon.cli").joinpath("_static", name).read_bytes()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_SECURITY_HEADERS)

    return handler


# -- the subcommand ------------------------------------------------------------------------

_DESCRIPTION = (
    "Serve a live web page of the election at PATH: the leader, the participants and the\n"
    "recent leader changes, pushed to the page as they happen. Joins nothing. Runs until\n"
    "SIGINT or SIGTERM (exit code 0); prints the page's URL once it serves."
)


_COMMAND = observer_command(
    "dashboard",
    _DESCRIPTION,
    ["listen", "allow-host"],
    help={
        "listen": f"address to serve on; port 0 picks a free one (default {_DEFAULT_LISTEN})",
        "allow-host": "a name the page may be reached by (repeatable); IP addresses, localhost and "
        "the --listen host always work, other Host headers get 403 (against DNS rebinding)",
    },
)


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``election-daemon dashboard``: serve the page until SIGINT or SIGTERM."""
    return run_observer_command(_COMMAND, argv, environ, run=_serve)


def _parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into (host, port); raise ConfigError naming --listen."""
    host, colon, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ipv6(host)
    else:
        valid_host = bool(host) and ":" not in host and host.isprintable() and " " not in host
    if not colon or not valid_host or not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ConfigError("--listen", f"expected HOST:PORT (port 0 to 65535), got {text!r}")
    return host, int(port_text)


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_allowed_hosts(names: Sequence[str]) -> tuple[str, ...]:
    for name in names:
        if not _HOST_NAME.fullmatch(name):
            raise ConfigError("--allow-host", f"must be a host name, got {name!r}")
    return tuple(names)


async def _serve(options: ObserveOptions, settings: Settings) -> int:
    host, port = _parse_listen(settings.get("listen", _DEFAULT_LISTEN))
    allowed = _parse_allowed_hosts(settings.get("allow_host", ()))
    await until_interrupted(_serve_until_cancelled(options, host, port, allowed))
    return ExitCode.OK


async def _serve_until_cancelled(
    options: ObserveOptions,
    host: str,
    port: int,
    allowed_hosts: Sequence[str] = (),
    *,
    max_connections: int = MAX_CONNECTIONS,
    header_timeout_s: float = HEADER_TIMEOUT_S,
) -> None:
    observer = options.observer()
    dashboard = Dashboard(options.path, allowed_hosts=[host, *allowed_hosts])
    # Subscribed before the first read, so that nothing is missed between it and serving.
    snapshots, changes = observer.snapshots(), observer.changes()
    runner = GuardedRunner(
        dashboard.app(), max_connections=max_connections, header_timeout_s=header_timeout_s, access_log=None
    )
    try:
        async with observer:
            # The page opened first must see the election, never a placeholder with no leader.
            first = observer.latest()
            assert first is not None  # start() returns once it has read the queue
            dashboard.update(first)
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as e:
                where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                raise ConfigError("--listen", f"cannot listen on {where}: {bind_error(e)}") from None
            bound_host, bound_port = runner.addresses[0][:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            print(f"{PROG} dashboard of {options.path}: http://{shown}:{bound_port}/", flush=True)
            await dashboard.follow(snapshots, changes)
    finally:
        await runner.cleanup()
