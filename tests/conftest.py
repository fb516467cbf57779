"""Shared test configuration: the real-ZooKeeper fixtures, a captured logger, process-group cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from kazoo.client import KazooClient
from structlog.testing import LogCapture

pytest_plugins = ["election_daemon.testing.pytest_plugin", "pytester"]


@pytest.fixture
def capture() -> LogCapture:
    return LogCapture()


@pytest.fixture
def log(capture: LogCapture) -> Any:
    return structlog.wrap_logger(structlog.PrintLogger(), processors=[capture])


@pytest.fixture
def kazoo(zk_hosts: str) -> Iterator[KazooClient]:
    """A real kazoo client without credentials: a stranger on the ensemble."""
    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def groups() -> Iterator[list[int]]:
    """Process groups to SIGKILL after the test, whatever happened in it."""
    started: list[int] = []
    yield started
    for pgid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
