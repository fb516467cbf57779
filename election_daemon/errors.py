"""The typed errors election_daemon raises: one root, a small tree.

::

    ElectionError                 root of everything this package raises
    ├── ConfigError               bad configuration; ``field`` names the culprit
    ├── ZooKeeperError            ZooKeeper refused or failed a request (aiozk's errors, converted)
    │   ├── ConnectTimeoutError   no ZooKeeper server answered within the connect timeout
    │   ├── TLSError              the TLS handshake with ZooKeeper failed (trust, host name, certificate)
    │   ├── AuthFailedError       ZooKeeper rejected our credentials (``addauth``)
    │   ├── SessionTimeoutError   the negotiated session timeout is outside what was asked
    │   ├── ConnectionLossError   the connection failed mid-request: its outcome is unknown
    │   ├── SessionLostError      the session expired or was closed under us
    │   ├── NoNodeError           the node does not exist
    │   ├── NodeExistsError       the node already exists
    │   ├── NoAuthError           ZooKeeper refused the request for lack of permission
    │   └── DataTooLargeError     node data larger than ZooKeeper accepts (jute.maxbuffer)
    ├── NotLeaderError            a leader-only action was tried without leadership, or it was lost
    │   └── StaleTokenError       a fence refused a write's token (defined in election_daemon.fencing)
    ├── ChildError                the leader-only command could not be started or supervised
    └── InternalError             the election's own loop failed repeatedly, so it stopped

aiozk exceptions never leave this package: ``election_daemon.library._zk`` converts them at the
boundary, keeping the original as ``__cause__``.
"""

from __future__ import annotations


class ElectionError(Exception):
    """Root of every error election_daemon raises."""


class ConfigError(ElectionError, ValueError):
    """Configuration is invalid. ``field`` names the offending setting."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ZooKeeperError(ElectionError):
    """ZooKeeper refused or failed a request."""


class ConnectTimeoutError(ZooKeeperError):
    """No ZooKeeper server could be reached within the connect timeout."""


class TLSError(ZooKeeperError):
    """No TLS connection to ZooKeeper could be made, for a reason that retrying will not cure.

    The server's certificate is not trusted, has expired or names another host; the server
    refused our client certificate; or one side speaks TLS and the other does not. Raised at
    :meth:`start` as soon as every server has failed so (not after the connect timeout); the
    message names the servers and the causes. A failure after the first session was
    established is retried instead, the session suspended meanwhile.
    """


class AuthFailedError(ZooKeeperError):
    """ZooKeeper rejected the session's credentials (``addauth``, e.g. a wrong digest password).

    Raised at :meth:`start`; the connection is closed, the session never used.
    """


class SessionTimeoutError(ZooKeeperError):
    """ZooKeeper negotiated a session timeout outside the accepted range (its tickTime clamps
    every session to 2 to 20 ticks): raised before our node enters the queue, since every
    timer, the lease included, would follow a timeout nobody chose."""


class ConnectionLossError(ZooKeeperError):
    """The connection failed while a request was in flight: it may or may not have been applied."""


class NoNodeError(ZooKeeperError):
    """The node does not exist."""


class NodeExistsError(ZooKeeperError):
    """The node already exists."""


class SessionLostError(ZooKeeperError):
    """The ZooKeeper session expired or was closed while a request depended on it."""


class NoAuthError(ZooKeeperError):
    """ZooKeeper refused the request: the session lacks permission on the node."""


class DataTooLargeError(ZooKeeperError):
    """Node data is larger than the ZooKeeper server accepts."""


class NotLeaderError(ElectionError):
    """A leader-only action was attempted without leadership, or leadership was lost during it."""


class ChildError(ElectionError):
    """The leader-only command could not be started or supervised."""


class InternalError(ElectionError):
    """The election's own work failed unexpectedly, again and again: it gave up leadership and stopped.

    Each failure is logged as an ``internal_error`` event with its traceback; the original
    exception of the last one is ``__cause__``.
    """
