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

__all__ = [
    "TcpProxyFactory",
    "tcp_proxy",
    "zk",
    "zk_ensemble",
    "zk_hosts",
    "zk_path",
    "zk_single",
]

TcpProxyFactory = Callable[[str, int], TcpProxy]

_ENSEMBLE_FIXTURE = "zk_ensemble"
_LOG_TAIL_LINES = 30
_path_numbers = itertools.count(1)


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
    with _started(3, **options) as ensemble:
        yield ensemble


@pytest.fixture
def zk_single() -> Iterator[ZooKeeperEnsemble]:
    """A fresh single ZooKeeper server for this test, free to stop, kill or pause."""
    with _started(1) as ensemble:
        yield ensemble


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


def _started(size: int, **options: Any) -> ZooKeeperEnsemble:
    """A started ensemble, or the test fails (never skips) with the reason."""
    try:
        return ZooKeeperEnsemble(size, **options).start()
    except ZooKeeperNotFoundError as error:
        reason = str(error)
    except ZooKeeperStartError as error:
        reason = f"ZooKeeper did not start: {error}"
    pytest.fail(reason, pytrace=False)
