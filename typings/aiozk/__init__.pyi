# Typed stubs for the parts of aiozk 0.32 that election_daemon uses (aiozk ships no types).
# Only election_daemon.library._zk imports aiozk; tests and benchmarks use ZKClient directly.
from typing import Any, TypeVar

from aiozk import protocol
from aiozk.protocol import ACL as ACL
from aiozk.protocol import WatchEvent as WatchEvent
from aiozk.session import Session

__version__: str

_R = TypeVar("_R")

class ZKClient:
    chroot: str | None
    session: Session
    default_acl: list[Any]
    stat_cache: dict[str, Any]
    recipes: Any
    def __init__(
        self,
        servers: str,
        chroot: str | None = None,
        session_timeout: float = 10,
        default_acl: list[Any] | None = None,
        retry_policy: Any = None,
        allow_read_only: bool = False,
        read_timeout: float | None = None,
    ) -> None: ...
    def normalize_path(self, path: str) -> str: ...
    def denormalize_path(self, path: str) -> str: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def send(self, request: protocol.Request[_R]) -> _R: ...
    async def exists(self, path: str, watch: bool = False) -> bool: ...
    async def create(
        self,
        path: str,
        data: bytes | None = None,
        acl: list[Any] | None = None,
        ephemeral: bool = False,
        sequential: bool = False,
        container: bool = False,
    ) -> str: ...
    async def ensure_path(self, path: str, acl: list[Any] | None = None) -> None: ...
    async def delete(self, path: str, force: bool = False) -> None: ...
    async def deleteall(self, path: str) -> None: ...
    async def get(self, path: str, watch: bool = False) -> tuple[bytes, Any]: ...
    async def get_data(self, path: str, watch: bool = False) -> bytes: ...
    async def set_data(self, path: str, data: bytes, force: bool = False) -> None: ...
    async def get_children(self, path: str, watch: bool = False) -> list[str]: ...
