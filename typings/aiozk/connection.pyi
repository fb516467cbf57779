import asyncio
from collections.abc import Callable
from typing import Any

from aiozk import protocol

class Connection:
    host: str
    port: int
    reader: asyncio.StreamReader | None
    writer: asyncio.StreamWriter | None
    closing: bool
    start_read_only: bool | None
    read_timeout: float
    def __init__(
        self, host: str, port: int, watch_handler: Callable[[Any], None], read_timeout: float | None
    ) -> None: ...
    async def connect(self) -> None: ...
    async def send_connect(
        self, request: protocol.ConnectRequest
    ) -> tuple[int, protocol.ConnectResponse] | None: ...
    def start_read_loop(self) -> None: ...
    async def read_loop(self) -> None: ...
    def abort(self, exception: type[BaseException] = ...) -> None: ...
    async def close(self, timeout: float) -> None: ...
