# aiozk.protocol is a package; one stub module covers the names we use.
from typing import Any, Generic, Self, TypeVar

_R_co = TypeVar("_R_co", covariant=True)

class Part:
    def __init__(self, **kwargs: Any) -> None: ...

class Request(Part, Generic[_R_co]):
    """Generic in its response type (a stub-only parameter): ``ZKClient.send`` returns it."""
    def serialize(self, xid: int | None = None) -> bytes: ...

class Response(Part):
    @classmethod
    def deserialize(cls, raw_bytes: bytes) -> Self: ...

class Stat(Part):
    created_zxid: int
    last_modified_zxid: int
    created: int
    modified: int
    version: int
    child_version: int
    acl_version: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    last_modified_children: int

class WatchEvent(Response):
    CREATED: int
    DELETED: int
    DATA_CHANGED: int
    CHILDREN_CHANGED: int
    type: int
    state: int
    path: str

class ConnectRequest(Request[ConnectResponse]):
    def __init__(
        self,
        *,
        protocol_version: int,
        last_seen_zxid: int,
        timeout: int,
        session_id: int,
        password: bytes,
        read_only: bool,
    ) -> None: ...

class ConnectResponse(Response):
    protocol_version: int
    timeout: int
    session_id: int
    password: bytes

class CloseRequest(Request[Any]):
    def __init__(self) -> None: ...

class SyncRequest(Request[SyncResponse]):
    def __init__(self, *, path: str) -> None: ...

class CreateRequest(Request[CreateResponse]):
    def __init__(self, *, path: str, data: bytes, acl: list[Any]) -> None: ...
    def set_flags(
        self, ephemeral: bool = False, sequential: bool = False, container: bool = False
    ) -> None: ...

class CreateResponse(Response):
    path: str

class Create2Request(Request[Create2Response]):
    def __init__(self, *, path: str, data: bytes, acl: list[Any]) -> None: ...
    def set_flags(
        self, ephemeral: bool = False, sequential: bool = False, container: bool = False
    ) -> None: ...

class Create2Response(Response):
    path: str
    stat: Stat

class GetChildren2Request(Request[GetChildren2Response]):
    def __init__(self, *, path: str, watch: bool) -> None: ...

class GetChildren2Response(Response):
    children: list[str]
    stat: Stat

class GetDataRequest(Request[GetDataResponse]):
    def __init__(self, *, path: str, watch: bool) -> None: ...

class GetDataResponse(Response):
    data: bytes | None
    stat: Stat

class SetDataRequest(Request[SetDataResponse]):
    def __init__(self, *, path: str, data: bytes, version: int) -> None: ...

class SetDataResponse(Response):
    stat: Stat

class ExistsRequest(Request[ExistsResponse]):
    def __init__(self, *, path: str, watch: bool) -> None: ...

class ExistsResponse(Response):
    stat: Stat

class SyncResponse(Response):
    path: str

class DeleteResponse(Response): ...

class DeleteRequest(Request[DeleteResponse]):
    def __init__(self, *, path: str, version: int) -> None: ...

class CheckVersionRequest(Request[Any]):
    def __init__(self, *, path: str, version: int) -> None: ...

class TransactionRequest(Request[TransactionResponse]):
    def __init__(self) -> None: ...
    def add(self, request: Request[Any]) -> None: ...

class TransactionResponse(Response):
    responses: list[Response | Exception]

AUTH_XID: int
WATCH_XID: int

class AuthResponse(Response): ...

class AuthRequest(Request[AuthResponse]):
    def __init__(self, *, type: int, scheme: str, auth: bytes) -> None: ...

class ID(Part):
    scheme: str
    id: str

class ACL(Part):
    perms: int
    id: ID
    @classmethod
    def make(
        cls,
        scheme: str,
        id: str,
        read: bool = False,
        write: bool = False,
        create: bool = False,
        delete: bool = False,
        admin: bool = False,
    ) -> ACL: ...

class GetACLRequest(Request[GetACLResponse]):
    def __init__(self, *, path: str) -> None: ...

class GetACLResponse(Response):
    acl: list[ACL]
    stat: Stat
