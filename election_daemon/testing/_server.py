"""One ZooKeeper server JVM: its process (start, stop, kill, pause), its four-letter words, its log."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar, cast

from election_daemon.testing import _process
from election_daemon.testing._errors import ZooKeeperStartError

__all__ = ["Mode", "ZooKeeperServer", "four_letter", "wait_for"]

Mode = Literal["leader", "follower", "standalone"]

_T = TypeVar("_T")

_POLL_INTERVAL_S = 0.05
_MODE_LINE = re.compile(r"^Mode: (leader|follower|standalone)$", re.MULTILINE)
_SESSION_ID = re.compile(r"\bsid=0x([0-9a-fA-F]+)")
_LOG_TAIL_BYTES = 65536


def four_letter(
    port: int, command: str, *, timeout_s: float = 2.0, ssl_context: ssl.SSLContext | None = None
) -> str:
    """Send a four-letter word to the server on ``127.0.0.1:port`` and return its whole answer.

    With ``ssl_context`` the word goes over TLS (a ``secureClientPort``). Raises OSError
    (TimeoutError and ssl.SSLError included) if the server does not answer within ``timeout_s``.
    """
    if not re.fullmatch(r"[a-z]{4}", command):
        raise ValueError(f"not a four-letter word: {command!r}")
    deadline = time.monotonic() + timeout_s
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=timeout_s))
        if ssl_context is not None:
            sock = stack.enter_context(ssl_context.wrap_socket(sock, server_hostname="127.0.0.1"))
        sock.sendall(command.encode("ascii"))
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
    return answer.decode("utf-8", errors="replace")


def wait_for(probe: Callable[[], _T | None], *, timeout_s: float, failure: Callable[[], str]) -> _T:
    """Poll ``probe`` until it returns something other than None; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"after {timeout_s:g} s: {failure()}")
        time.sleep(_POLL_INTERVAL_S)


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with path.open("rb") as file:
            file.seek(max(file.seek(0, 2) - _LOG_TAIL_BYTES, 0))
            data = file.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


class ZooKeeperServer:
    """One server of a :class:`ZooKeeperEnsemble`, run as its own JVM process.

    ``index`` is its position in ``ensemble.servers`` (from 0); ``myid`` is its ZooKeeper
    server id (``index + 1``). A server started with TLS also has a ``secure_client_port``
    (``secure_address``); one started without a plain port has no ``client_port`` (``address``),
    and its four-letter words go over TLS with ``ssl_context``. Blocking methods: async code
    calls them through ``asyncio.to_thread``.
    """

    def __init__(
        self,
        *,
        index: int,
        client_port: int | None,
        directory: Path,
        command: Sequence[str],
        peers: list[ZooKeeperServer],
        secure_client_port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if client_port is None and (secure_client_port is None or ssl_context is None):
            raise ValueError("a server without a plain client port needs a secure port and an ssl_context")
        self.index = index
        self.myid = index + 1
        self._client_port = client_port
        self.secure_client_port = secure_client_port
        self._ssl_context = ssl_context
        self.directory = directory
        self._command = list(command)
        # The whole ensemble, this server included: start() waits to serve only if a quorum can form.
        self._peers = peers
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.is_running else "stopped"
        ports = [str(port) for port in (self._client_port,) if port is not None]
        if self.secure_client_port is not None:
            ports.append(f"{self.secure_client_port} (TLS)")
        return f"<ZooKeeperServer myid={self.myid} 127.0.0.1:{', '.join(ports)} {state}>"

    @property
    def client_port(self) -> int:
        """The plain (unencrypted) client port; RuntimeError if the server was started without one."""
        if self._client_port is None:
            raise RuntimeError(
                f"{self!r} has no plain client port (plain_port=False): use secure_client_port"
            )
        return self._client_port

    @property
    def has_plain_port(self) -> bool:
        return self._client_port is not None

    @property
    def address(self) -> str:
        """``127.0.0.1:<client port>``, the plain port."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def secure_address(self) -> str:
        """``127.0.0.1:<secure client port>``, the TLS port; RuntimeError if it has none."""
        if self.secure_client_port is None:
            raise RuntimeError(f"{self!r} serves no TLS port (start it with tls=...)")
        return f"127.0.0.1:{self.secure_client_port}"

    @property
    def log_path(self) -> Path:
        """ZooKeeper's own log (log4j or logback), kept across restarts."""
        return self.directory / "zookeeper.log"

    @property
    def console_path(self) -> Path:
        """The JVM's stdout and stderr: startup failures (bad classpath, bad config) land here."""
        return self.directory / "console.log"

    @property
    def is_running(self) -> bool:
        """True while the JVM process exists, paused or not."""
        return self._process is not None and self._process.poll() is None

    @property
    def is_paused(self) -> bool:
        return self._paused and self.is_running

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running and self._process is not None else None

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start the JVM; if a quorum of the ensemble is running, wait until this server serves.

        Raises ZooKeeperStartError if it exits or does not serve within ``timeout_s``.
        """
        self.launch()
        running = sum(peer.is_running for peer in self._peers)
        if running > len(self._peers) // 2:
            try:
                self.wait_serving(timeout_s)
            except TimeoutError as error:
                raise ZooKeeperStartError(f"{error}\n{self.log_tail()}") from None

    def launch(self) -> None:
        """Start the JVM without waiting for it to serve."""
        if self.is_running:
            raise RuntimeError(f"{self!r} is already running")
        self._reap()
        self._paused = False
        self._process = _process.spawn(self._command, cwd=self.directory, output_path=self.console_path)

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), SIGKILL after ``timeout_s``; wait until it is gone."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            if self._paused:
                # A stopped process only acts on SIGTERM once it runs again.
                process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap()

    def kill(self) -> None:
        """Crash it (SIGKILL) and wait until it is gone: its client sessions stay alive until they expire."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        self._reap()

    def pause(self) -> None:
        """Freeze it (SIGSTOP), like a long GC pause: its sockets stay open but it answers nothing.

        Returns once every thread of the JVM has stopped.
        """
        self._signal(signal.SIGSTOP)
        self._paused = True
        self._wait_threads(stopped=True)

    def resume(self) -> None:
        """Unfreeze a paused server (SIGCONT); returns once its threads run again."""
        self._signal(signal.SIGCONT)
        self._paused = False
        self._wait_threads(stopped=False)

    def wait_serving(self, timeout_s: float = 30.0) -> None:
        """Wait until the server serves clients (``srvr`` reports a mode).

        Raises ZooKeeperStartError at once if the process has exited, TimeoutError at the deadline.
        """

        def serving() -> bool | None:
            if not self.is_running:
                code = None if self._process is None else self._process.returncode
                raise ZooKeeperStartError(f"{self!r} is not running (exit code {code})\n{self.log_tail()}")
            return True if self.mode() is not None else None

        wait_for(serving, timeout_s=timeout_s, failure=lambda: f"{self!r} is not serving\n{self.log_tail()}")

    def mode(self, *, timeout_s: float = 1.0) -> Mode | None:
        """'leader', 'follower' or 'standalone' while it serves; None if it does not (or is paused)."""
        if not self.is_running or self._paused:
            return None
        try:
            answer = self.four_letter("srvr", timeout_s=timeout_s)
        except OSError:
            return None
        match = _MODE_LINE.search(answer)
        if match is None:
            return None
        return cast(Mode, match.group(1))  # the regex admits only Mode's values

    def four_letter(self, command: str, *, timeout_s: float = 2.0) -> str:
        """Send a four-letter word (``srvr``, ``cons``, ``mntr``, ...) and return the answer.

        On the plain port; over TLS on the secure port if the server has no plain port.
        """
        if self._client_port is not None:
            return four_letter(self._client_port, command, timeout_s=timeout_s)
        assert self.secure_client_port is not None  # checked in __init__
        return four_letter(
            self.secure_client_port, command, timeout_s=timeout_s, ssl_context=self._ssl_context
        )

    def session_ids(self) -> set[int]:
        """Ids of the sessions connected to this server (from ``cons``); empty if it does not answer."""
        if not self.is_running or self._paused:
            return set()
        try:
            answer = self.four_letter("cons")
        except OSError:
            return set()
        return {int(match, 16) for match in _SESSION_ID.findall(answer)}

    def log_tail(self, lines: int = 40) -> str:
        """The end of its ZooKeeper log, and of its JVM output if there is any: for error messages."""
        text = f"--- last lines of {self.log_path} ---\n{tail(self.log_path, lines)}"
        console = tail(self.console_path, lines)
        if console.strip():
            text += f"\n--- last lines of {self.console_path} ---\n{console}"
        return text

    def _wait_threads(self, *, stopped: bool) -> None:
        """Wait until the kernel reports every thread stopped (or none), as signals act asynchronously."""
        threads = Path(f"/proc/{self.pid}/task")  # Linux; elsewhere there is nothing to wait on

        def settled() -> bool | None:
            states = []
            for stat in threads.glob("*/stat"):
                with contextlib.suppress(OSError):  # the thread just ended
                    states.append(stat.read_text().rpartition(")")[2].split()[0])
            return True if all((state == "T") == stopped for state in states) else None

        wait_for(
            settled, timeout_s=10.0, failure=lambda: f"{self!r} did not {'stop' if stopped else 'resume'}"
        )

    def _signal(self, signum: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"{self!r} is not running")
        self._process.send_signal(signum)

    def _reap(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10.0)
            if self._process.returncode is not None:
                _process.forget(self._process)
        self._paused = False
