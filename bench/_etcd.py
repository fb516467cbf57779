"""A throwaway single-node etcd server for bench/failover.py, and what it tells about an ``etcdctl lock``.

Only used where the ``etcd`` and ``etcdctl`` programs are installed (Debian: ``etcd-server``,
``etcd-client``). The server listens on free loopback ports and keeps its data in a temporary
directory on tmpfs where there is one: the benchmark's ZooKeeper runs with ``forceSync=no``,
and on tmpfs etcd's fsyncs cost nothing either, so neither pays for a disk the other skips.
Everything here blocks. With ``setpriv --pdeathsig KILL --`` as its ``argv_prefix``, the server
dies with the thread that called :meth:`EtcdServer.start`, which should therefore outlive it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["EtcdServer", "EtcdStartError", "etcd_installed"]

_TMPFS = Path("/dev/shm")
_POLL_INTERVAL_S = 0.05
_REQUEST_TIMEOUT_S = 2.0
_STOP_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3


class EtcdStartError(Exception):
    """The etcd server did not start, or did not answer in time."""


def etcd_installed() -> bool:
    """Whether both ``etcd`` and ``etcdctl`` are on PATH."""
    return shutil.which("etcd") is not None and shutil.which("etcdctl") is not None


class EtcdServer:
    """One etcd member on 127.0.0.1, started by :meth:`start`, removed with its data by :meth:`close`.

    ``argv_prefix`` goes before etcd's own argv.
    """

    def __init__(self, argv_prefix: Sequence[str] = ()) -> None:
        self._argv_prefix = tuple(argv_prefix)
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._client_port = 0

    @property
    def endpoint(self) -> str:
        """The client URL, for ``etcdctl --endpoints``."""
        return f"http://127.0.0.1:{self._client_port}"

    def start(self, timeout_s: float) -> None:
        """Start the server and return once it reports itself healthy.

        :raises EtcdStartError: if it exits or is not healthy within ``timeout_s``.
        """
        self._directory = tempfile.TemporaryDirectory(
            prefix="bench-etcd-", dir=_TMPFS if _TMPFS.is_dir() else None
        )
        for attempt in range(1, _START_ATTEMPTS + 1):
            log_path = Path(self._directory.name) / f"etcd-{attempt}.log"
            try:
                self._launch(Path(self._directory.name) / f"data-{attempt}", log_path, timeout_s)
                return
            except EtcdStartError:
                self._stop()
                # A port that was free when picked may have been taken since: pick others.
                if attempt == _START_ATTEMPTS or "address already in use" not in _tail(log_path):
                    raise

    def _launch(self, data_dir: Path, log_path: Path, timeout_s: float) -> None:
        self._client_port, peer_port = _free_ports(2)
        peer_url = f"http://127.0.0.1:{peer_port}"
        argv = [
            *self._argv_prefix,
            "etcd",
            "--name=bench",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={self.endpoint}",
            f"--advertise-client-urls={self.endpoint}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=bench={peer_url}",
            "--logger=zap",
            "--log-level=warn",
        ]
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if self._process.poll() is not None:
                raise EtcdStartError(f"etcd exited with status {self._process.returncode}: {_tail(log_path)}")
            if time.monotonic() > deadline:
                raise EtcdStartError(f"etcd not healthy after {timeout_s:.0f} s: {_tail(log_path)}")
            time.sleep(_POLL_INTERVAL_S)

    def _healthy(self) -> bool:
        try:
            return self._get_json("/health").get("health") == "true"
        except (OSError, ValueError):
            return False

    def version(self) -> str:
        """The server's version, e.g. ``3.4.23``."""
        return str(self._get_json("/version").get("etcdserver", "?"))

    def lock_has_waiter(self, name: str) -> bool:
        """Whether ``etcdctl lock NAME`` has a holder and one waiter whose watch is in place.

        Each ``etcdctl lock`` puts a key under ``NAME/``; a waiter then watches the key before its
        own. No other client of this server watches anything, so one watcher is that waiter's.
        That watch starts at a past revision, so etcd first files it as unsynced ("slow") and
        moves it among the watchers it notifies at once only on its next sync, which runs every
        100 ms: a delete before then reaches the waiter up to 100 ms late.
        """
        try:
            prefix = f"{name}/".encode()
            # The range [NAME/, NAME0) is every key that starts with NAME/ ("0" follows "/").
            keys = self._post_json(
                "/v3/kv/range",
                {"key": _b64(prefix), "range_end": _b64(prefix[:-1] + b"0"), "count_only": True},
            )
            if int(keys.get("count", 0)) != 2:
                return False
            metrics = self._metrics()
            return (
                metrics["etcd_debugging_mvcc_watcher_total"] == 1
                and metrics["etcd_debugging_mvcc_slow_watcher_total"] == 0
            )
        except (OSError, ValueError, KeyError):
            # A slow answer on a loaded machine: the caller asks again until its deadline.
            return False

    def _metrics(self) -> dict[str, float]:
        """The server's Prometheus metrics that have no labels."""
        with urllib.request.urlopen(self.endpoint + "/metrics", timeout=_REQUEST_TIMEOUT_S) as response:
            text = response.read().decode()
        pairs = (line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        return {name: float(value) for name, value in pairs if "{" not in name}

    def _get_json(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.endpoint + path, timeout=_REQUEST_TIMEOUT_S) as response:
            return _as_object(json.load(response))

    def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.endpoint + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=_REQUEST_TIMEOUT_S) as response:
            return _as_object(json.load(response))

    def close(self) -> None:
        """Stop the server and delete its data."""
        self._stop()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free now (held open together, so all differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _as_object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object from etcd, got {value!r}")
    return value


def _tail(log_path: Path) -> str:
    try:
        return " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
    except OSError:
        return ""
