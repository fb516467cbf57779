"""Real ZooKeeper servers for tests, demos and fault injection: ensembles, proxies, forced expiry.

Nothing here mocks ZooKeeper: :class:`ZooKeeperEnsemble` runs real server JVMs (found by
:func:`find_zookeeper`), :class:`TcpProxy` puts real sockets between clients and servers or
between servers, and :func:`expire_session` makes ZooKeeper itself expire a session. The pytest
fixtures live in :mod:`election_daemon.testing.pytest_plugin`.

The API is synchronous; async code calls the blocking methods through ``asyncio.to_thread``.
"""

from election_daemon.testing._ensemble import ZooKeeperEnsemble
from election_daemon.testing._errors import ZooKeeperNotFoundError, ZooKeeperStartError
from election_daemon.testing._install import ZooKeeperInstall, find_zookeeper
from election_daemon.testing._proxy import TcpProxy
from election_daemon.testing._server import Mode, ZooKeeperServer, four_letter
from election_daemon.testing._session import expire_session

__all__ = [
    "Mode",
    "TcpProxy",
    "ZooKeeperEnsemble",
    "ZooKeeperInstall",
    "ZooKeeperNotFoundError",
    "ZooKeeperServer",
    "ZooKeeperStartError",
    "expire_session",
    "find_zookeeper",
    "four_letter",
]
