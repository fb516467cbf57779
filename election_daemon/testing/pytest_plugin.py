"""pytest fixtures that run real ZooKeeper servers: ``zk``, ``zk_hosts``, ``zk_path``, and more.

Enable with ``pytest_plugins = ["election_daemon.testing.pytest_plugin"]`` in a conftest.py.

- ``zk``: one ZooKeeper server shared by the whole session (a :class:`ZooKeeperEnsemble`).
- ``zk_hosts``: its connect string.
- ``zk_path``: a ZooKeeper path unique to the test (not created), e.g. ``/tests/test_x-3``, so
  that tests sharing ``zk`` do not interfere.
- ``zk_ensemble``: a fresh three-server ensemble for the test, for destructive tests. Tests
  using it get the ``ensemble`` mark, and a mark with arguments configures it:
  ``@pytest.mark.ensemble(quorum_proxies=True)``.
- ``zk_single``: a fresh single server for the test, for tests that stop or kill it.
- ``tcp_proxy``: a factory, ``tcp_proxy(host, port) -> TcpProxy`` (started), closed at teardown.

Secured servers (quorum traffic stays plain):

- ``tls_files``: a test CA and certificates (:class:`TlsFiles`), generated once per session.
- ``zk_tls``: one server for the whole session serving TLS (``secure_hosts``) with
  ``ssl.clientAuth=need`` and the X509 authentication provider, its plain port kept. Clients
  present ``tls_files.client`` (``x509:CN=participant-a,OU=tests,O=election_daemon``) or
  ``tls_files.operator``; digest ACLs work there as everywhere.
- ``zk_tls_hosts``: its TLS connect string.
- ``zk_factory``: ``zk_factory(size=1, **options) -> ZooKeeperEnsemble``, started, killed at
  teardown: for servers with other security options (``enforce_auth``, ``client_auth``,
  ``plain_port=False``, ...), where ``tls=True`` stands for ``tls_files``.
- ``zk_ensemble`` takes the same ``tls=True`` in its mark:
  ``@pytest.mark.ensemble(tls=True, x509_auth=True)``.

If ZooKeeper is not installed the tests using these fixtures fail (they are not skipped) with
a one-line install hint. Servers never outlive the run: fixtures kill them at teardown, and
an exit hook and the kernel (parent-death signal) catch the rest. When a test fails, the end of
each server's log is added to its report.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from election_daemon.testing._ensemble import ZooKeeperEnsemble
from election_daemon.testing._errors import ZooKeeperNotFoundError, ZooKeeperStartError
from election_daemon.testing._proxy import TcpProxy
from election_daemon.testing._tls import TlsFiles, make_tls_files

__all__ = [
    "TcpProxyFactory",
    "ZooKeeperFactory",
    "tcp_proxy",
    "tls_files",
    "zk",
    "zk_ensemble",
    "zk_factory",
    "zk_hosts",
    "zk_path",
    "zk_single",
    "zk_tls",
    "zk_tls_hosts",
]

TcpProxyFactory = Callable[[str, int], TcpProxy]
ZooKeeperFactory = Callable[..., ZooKeeperEnsemble]

_ENSEMBLE_FIXTURE = "zk_ensemble"
_LOG_TAIL_LINES = 30
_path_numbers = itertools.count(1)
_FACTORY_ENSEMBLES = pytest.StashKey[list[ZooKeeperEnsemble]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ensemble(**options): needs a three-server ZooKeeper ensemble (options for ZooKeeperEnsemble)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (
            _ENSEMBLE_FIXTURE in getattr(item, "fixturenames", ())
            and item.get_closest_marker("ensemble") is None
        ):
            item.add_marker(pytest.mark.ensemble)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed and call.when == "call":
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, ZooKeeperEnsemble):
                report.sections.append((f"ZooKeeper logs ({name})", value.log_tails(_LOG_TAIL_LINES)))
        made: list[ZooKeeperEnsemble] = item.stash.get(_FACTORY_ENSEMBLES, [])
        for number, ensemble in enumerate(made, 1):
            report.sections.append(
                (f"ZooKeeper logs (zk_factory #{number})", ensemble.log_tails(_LOG_TAIL_LINES))
            )
    return report


@pytest.fixture(scope="session")
def zk() -> Iterator[ZooKeeperEnsemble]:
    """One ZooKeeper server for the whole session; use ``zk_path`` to keep tests apart."""
    with _started(1) as ensemble:
        yield ensemble


@pytest.fixture
def zk_hosts(zk: ZooKeeperEnsemble) -> str:
    """The connect string of the session's ZooKeeper server."""
    return zk.hosts


@pytest.fixture
def zk_path(request: pytest.FixtureRequest) -> str:
    """A ZooKeeper path no other test of the session uses (not created)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
    return f"/tests/{name}-{next(_path_numbers)}"


@pytest.fixture
def zk_ensemble(request: pytest.FixtureRequest) -> Iterator[ZooKeeperEnsemble]:
    """A fresh three-server ensemble for this test; ``@pytest.mark.ensemble(...)`` passes options."""
    marker = request.node.get_closest_marker("ensemble")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    with _started(3, **_resolve_tls(request, options)) as ensemble:
        yield ensemble


@pytest.fixture
def zk_single() -> Iterator[ZooKeeperEnsemble]:
    """A fresh single ZooKeeper server for this test, free to stop, kill or pause."""
    with _started(1) as ensemble:
        yield ensemble


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and certificates for servers and clients, as PEM files (generated once per session)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def zk_tls(tls_files: TlsFiles) -> Iterator[ZooKeeperEnsemble]:
    """One server for the session serving TLS, client certificates required, X509 authentication on."""
    with _started(1, tls=tls_files, client_auth="need", x509_auth=True) as ensemble:
        yield ensemble


@pytest.fixture
def zk_tls_hosts(zk_tls: ZooKeeperEnsemble) -> str:
    """The TLS connect string of the session's TLS server."""
    return zk_tls.secure_hosts


@pytest.fixture
def zk_factory(request: pytest.FixtureRequest) -> Iterator[ZooKeeperFactory]:
    """Start ensembles with any options, ``zk_factory(size=1, **options)``; all killed at teardown.

    ``tls=True`` stands for the session's ``tls_files``.
    """
    ensembles: list[ZooKeeperEnsemble] = []

    def make(size: int = 1, **options: Any) -> ZooKeeperEnsemble:
        ensemble = _started(size, **_resolve_tls(request, options))
        ensembles.append(ensemble)
        request.node.stash.setdefault(_FACTORY_ENSEMBLES, []).append(ensemble)
        return ensemble

    yield make
    for ensemble in ensembles:
        ensemble.close()


@pytest.fixture
def tcp_proxy() -> Iterator[TcpProxyFactory]:
    """Make started :class:`TcpProxy` instances, ``tcp_proxy(host, port)``; all closed at teardown."""
    proxies: list[TcpProxy] = []

    def make(target_host: str, target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_host, target_port)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.close()


def _resolve_tls(request: pytest.FixtureRequest, options: dict[str, Any]) -> dict[str, Any]:
    if options.get("tls") is True:
        return {**options, "tls": request.getfixturevalue("tls_files")}
    return options


def _started(size: int, **options: Any) -> ZooKeeperEnsemble:
    """A started ensemble, or the test fails (never skips) with the reason."""
    try:
        return ZooKeeperEnsemble(size, **options).start()
    except ZooKeeperNotFoundError as error:
        reason = str(error)
    except ZooKeeperStartError as error:
        reason = f"ZooKeeper did not start: {error}"
    pytest.fail(reason, pytrace=False)
