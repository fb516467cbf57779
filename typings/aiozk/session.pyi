import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiozk.connection import Connection
from aiozk.protocol import Request
from aiozk.states import SessionStateMachine

_R = TypeVar("_R")

class Session:
    hosts: list[tuple[str, int]]
    conn: Connection | None
    state: SessionStateMachine
    allow_read_only: bool
    last_zxid: int | None
    session_id: int | None
    timeout: float
    password: bytes
    read_timeout: float | None
    repair_loop_task: asyncio.Task[None] | None
    heartbeat_handle: asyncio.TimerHandle | None
    heartbeat_task: asyncio.Task[None] | None
    started: bool
    closing: bool
    watch_callbacks: dict[tuple[int, str], set[Callable[[str], None]]]
    def __init__(
        self,
        servers: str,
        timeout: float,
        retry_policy: Any,
        allow_read_only: bool,
        read_timeout: float | None,
    ) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def find_server(self, allow_read_only: bool) -> None: ...
    async def make_connection(self, host: str, port: int) -> Connection | None: ...
    async def repair_loop(self) -> None: ...
    async def set_existing_watches(self) -> None: ...
    async def send(self, request: Request[_R]) -> _R: ...
    def event_dispatch(self, event: Any) -> None: ...
    def add_watch_callback(self, event_type: int, path: str, callback: Callable[[str], None]) -> None: ...
    def remove_watch_callback(self, event_type: int, path: str, callback: Callable[[str], None]) -> None: ...
