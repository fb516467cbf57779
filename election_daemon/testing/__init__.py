"""Real ZooKeeper servers for tests, demos and fault injection: ensembles, proxies, forced expiry.

Nothing here mocks ZooKeeper: :class:`ZooKeeperEnsemble` runs real server JVMs (found by
:func:`find_zookeeper`), :class:`TcpProxy` puts real sockets between clients and servers or
between servers, and :func:`expire_session` makes ZooKeeper itself expire a session. The pytest
fixtures live in :mod:`election_daemon.testing.pytest_plugin`.

Fleets of daemons: :func:`start_daemon` runs ``python -m election_daemon`` with a clean
:func:`daemon_environment`, :func:`parse_event` reads its JSON log lines as :class:`DaemonEvent`,
and :class:`SafetyCheck` checks that leader-only commands never overlap. :func:`start_process`
starts any child in a session of its own that dies with its parent; :func:`signal_group`
signals a process group; :func:`process_stat`, :func:`process_alive` and
:func:`process_group_alive` read /proc.

Secured servers: ``ZooKeeperEnsemble(tls=make_tls_files(dir), client_auth=..., x509_auth=...,
enforce_auth=..., plain_port=...)`` serves TLS beside (or instead of) the plain port, on
``secure_hosts``; :class:`TlsFiles` holds a test CA's PEM files (:class:`CertKey` each), and
:func:`digest_id` computes ``digest`` ACL ids.

The API is synchronous; async code calls the blocking methods through ``asyncio.to_thread``.
"""

from election_daemon._processes import ProcessStat, process_alive, process_group_alive, process_stat
from election_daemon.testing._ensemble import ClientAuth, ZooKeeperEnsemble
from election_daemon.testing._errors import ZooKeeperNotFoundError, ZooKeeperStartError
from election_daemon.testing._fleet import (
    DaemonEvent,
    SafetyCheck,
    daemon_args,
    daemon_argv,
    daemon_environment,
    parse_event,
    read_lines,
    start_daemon,
)
from election_daemon.testing._install import ZooKeeperInstall, find_zookeeper
from election_daemon.testing._process import signal_group, start_process
from election_daemon.testing._proxy import TcpProxy
from election_daemon.testing._server import Mode, ZooKeeperServer, four_letter
from election_daemon.testing._session import expire_session
from election_daemon.testing._tls import CertKey, TlsFiles, digest_id, make_tls_files

__all__ = [
    "CertKey",
    "ClientAuth",
    "DaemonEvent",
    "Mode",
    "ProcessStat",
    "SafetyCheck",
    "TcpProxy",
    "TlsFiles",
    "ZooKeeperEnsemble",
    "ZooKeeperInstall",
    "ZooKeeperNotFoundError",
    "ZooKeeperServer",
    "ZooKeeperStartError",
    "daemon_args",
    "daemon_argv",
    "daemon_environment",
    "digest_id",
    "expire_session",
    "find_zookeeper",
    "four_letter",
    "make_tls_files",
    "parse_event",
    "process_alive",
    "process_group_alive",
    "process_stat",
    "read_lines",
    "signal_group",
    "start_daemon",
    "start_process",
]
