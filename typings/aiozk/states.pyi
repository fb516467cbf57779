import asyncio
from typing import Any

class States:
    CONNECTED: str
    SUSPENDED: str
    READ_ONLY: str
    LOST: str

class SessionStateMachine:
    current_state: str
    futures: dict[str, set[asyncio.Future[None]]]
    def __init__(self, session: Any) -> None: ...
    def transition_to(self, state: str) -> None: ...
    def wait_for(self, *states: str) -> asyncio.Future[None]: ...
