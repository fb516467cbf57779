"""The ``dashboard`` subcommand: a live web page of one election, pushed by server-sent events.

``election-daemon dashboard --hosts HOSTS --path PATH [--listen HOST:PORT]`` observes the
election (it joins nothing) and serves:

- ``/``: a self-contained page (its script and style come from this server only, under a
  strict Content-Security-Policy) showing the leader, the participants and recent changes;
- ``/events``: the state as server-sent events, one ``data:`` line of JSON per update;
- ``/api/state``: the same state as one JSON object.

The state is ``Snapshot.as_dict()`` (``leader_for_s`` as of the moment it is sent) plus
``takeover_seen`` (false: ``leader_for_s`` is an upper bound, see ``Snapshot``), ``connected``
(false: ZooKeeper is out of reach and this is the last known state) and ``history``: the last
leader changes the dashboard saw, newest first (``LeaderChange.as_dict()``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.resources
import ipaddress
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from . import _jsonout
from ._cmd_observe import ObserveOptions, run_observer_command, until_interrupted
from ._exitcodes import ExitCode
from .cli import PROG
from .errors import ConfigError
from .observer import LeaderChange, Snapshot

__all__ = ["Dashboard", "main"]

_HISTORY_SIZE = 20
# Comment lines keep idle connections open through proxies and reveal departed browsers.
_KEEPALIVE_S = 15.0
_DEFAULT_LISTEN = "127.0.0.1:8080"
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

    def __init__(self, path: str, *, history_size: int = _HISTORY_SIZE) -> None:
        self.path = path
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
        app = web.Application()
        for route, (name, content_type) in _ASSETS.items():
            app.router.add_get(route, _asset_handler(name, content_type))
        app.router.add_get("/api/state", self._api_state)
        app.router.add_get("/events", self._events)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _api_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state(), dumps=_jsonout.dumps, headers={"Cache-Control": "no-store"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
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
        return f"data: {_jsonout.dumps(self.state())}\n\n".encode()

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing = True
        self._notify()


def _asset_handler(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = importlib.resources.files("election_daemon").joinpath("_static", name).read_bytes()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_SECURITY_HEADERS)

    return handler


# -- the subcommand ------------------------------------------------------------------------

_DESCRIPTION = (
    "Serve a live web page of the election at PATH: the leader, the participants and the\n"
    "recent leader changes, pushed to the page as they happen. Joins nothing. Runs until\n"
    "SIGINT or SIGTERM (exit code 0); prints the page's URL once it serves."
)


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``election-daemon dashboard``: serve the page until SIGINT or SIGTERM."""
    return run_observer_command(
        "dashboard", _DESCRIPTION, argv, environ, add_arguments=_arguments, run=_serve
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=_DEFAULT_LISTEN,
        help=f"address to serve on; port 0 picks a free one (default {_DEFAULT_LISTEN})",
    )


def _parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into (host, port); raise ConfigError naming --listen."""
    host, colon, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ipv6(host)
    else:
        valid_host = bool(host) and ":" not in host and host.isprintable() and " " not in host
    if not colon or not valid_host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError("--listen", f"expected HOST:PORT (port 0 to 65535), got {text!r}")
    return host, int(port_text)


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


async def _serve(options: ObserveOptions, args: argparse.Namespace) -> int:
    host, port = _parse_listen(args.listen)
    await until_interrupted(_serve_until_cancelled(options, host, port))
    return ExitCode.OK


async def _serve_until_cancelled(options: ObserveOptions, host: str, port: int) -> None:
    observer = options.observer()
    dashboard = Dashboard(options.path)
    # Subscribed before the first read, so that nothing is missed between it and serving.
    snapshots, changes = observer.snapshots(), observer.changes()
    runner = web.AppRunner(dashboard.app(), access_log=None)
    try:
        async with observer:
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as e:
                reason = os.strerror(e.errno) if e.errno else str(e)
                raise ConfigError("--listen", f"cannot listen on {host}:{port}: {reason}") from None
            bound_host, bound_port = runner.addresses[0][:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            print(f"{PROG} dashboard of {options.path}: http://{shown}:{bound_port}/", flush=True)
            await dashboard.follow(snapshots, changes)
    finally:
        await runner.cleanup()
