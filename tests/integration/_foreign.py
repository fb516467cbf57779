"""Foreign election participants, as subprocesses: kazoo's ``Election`` and Curator's ``LeaderLatch``.

They run in their own processes so that a test can SIGKILL them like a crashed leader, and they
report on stdout, one line per event (read by an asyncio task on the test's loop):

- ``STARTED <node path>``: the participant's node exists;
- ``LEADER <epoch ms>`` / ``FOLLOWER <epoch ms>``: leadership edges, as the recipe reports them;
- ``CLOSING <epoch ms>``: asked to leave (stdin said ``close`` or reached EOF); the participant
  stops acting as leader *before* its recipe deletes the node, like a well-behaved application;
- ``CLOSED <epoch ms>``: recipe and client closed; the process exits 0 next.

Because the lines are read on the same event loop as our in-process elections, and a participant
prints ``CLOSING`` before it deletes its node, a test sees the foreign leader step down before
any of ours can learn that its node is gone.

Run as a script, this module is the kazoo participant:
``python _foreign.py HOSTS PATH IDENTITY SESSION_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

JAVA_SOURCE = Path(__file__).parent / "java" / "LatchParticipant.java"
JAVA_CLASS = "LatchParticipant"
JAVA_DIR = Path("/usr/share/java")
CURATOR_JARS = (
    "curator-recipes.jar",
    "curator-framework.jar",
    "curator-client.jar",
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "guava.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",  # silences Curator's and ZooKeeper's logging
)
REQUIRE_CURATOR_ENV = "ELECTION_DAEMON_REQUIRE_CURATOR"
# Quick JVM start-up: the participant does little work, and the machine may be small.
_JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k")
_STDERR_TAIL_LINES = 40


class CuratorUnavailableError(Exception):
    """javac, java or a Curator/ZooKeeper jar is missing; the message says which."""


@dataclass(frozen=True)
class CuratorRuntime:
    """What it takes to run :data:`JAVA_CLASS`: the java binary and the class path."""

    java: str
    classpath: str


def compile_latch_participant(out_dir: Path) -> CuratorRuntime:
    """Compile the Curator participant into ``out_dir``; CuratorUnavailableError if we cannot."""
    javac, java = shutil.which("javac"), shutil.which("java")
    missing = [name for name, found in (("javac", javac), ("java", java)) if found is None]
    jars = [JAVA_DIR / jar for jar in CURATOR_JARS]
    missing += [str(jar) for jar in jars if not jar.is_file()]
    if missing or javac is None or java is None:
        raise CuratorUnavailableError(
            f"missing {', '.join(missing)} (Debian: apt-get install libcurator-recipes-java "
            "default-jdk-headless, or scripts/ensure-system-packages curator)"
        )
    classpath = os.pathsep.join(str(jar) for jar in jars)
    result = subprocess.run(
        [javac, "-nowarn", "-Xlint:-path", "-cp", classpath, "-d", str(out_dir), str(JAVA_SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"javac failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return CuratorRuntime(java, os.pathsep.join([classpath, str(out_dir)]))


@dataclass(frozen=True)
class Line:
    """One line a participant printed, stamped with the test's monotonic clock when read."""

    monotonic_s: float
    kind: str
    rest: str


class ForeignParticipant:
    """A foreign contender in its own process; leadership as its last stdout line says.

    ``is_leading`` is True from a ``LEADER`` line until a ``FOLLOWER``, ``CLOSING`` or ``CLOSED``
    line, the end of its output, or :meth:`kill` (a SIGKILLed process does no leader's work).
    """

    def __init__(self, recipe: str, identity: str, argv: list[str]) -> None:
        self.recipe = recipe
        self.identity = identity
        self.argv = argv
        self.lines: list[Line] = []
        self.node: str | None = None
        """The full path of its node, once ``STARTED``."""
        self._leading = False
        self._killed = False
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self._changed = asyncio.Event()
        self.listeners: list[Callable[[ForeignParticipant, Line], None]] = []
        """Called on the loop with every stdout line, after ``is_leading`` reflects it."""

    def __repr__(self) -> str:
        return f"<{self.recipe} {self.identity} node={self.node} leading={self.is_leading}>"

    @property
    def name(self) -> str | None:
        """The name of its node (the last path component), once ``STARTED``."""
        return None if self.node is None else self.node.rsplit("/", 1)[-1]

    @property
    def is_leading(self) -> bool:
        return self._leading and not self._killed

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def exited(self) -> bool:
        return self._proc is not None and self._proc.returncode is not None

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def leader_lines(self) -> list[Line]:
        return [line for line in self.lines if line.kind == "LEADER"]

    async def start(self, timeout_s: float = 30.0) -> ForeignParticipant:
        """Start the process; return once its node exists (``STARTED``)."""
        assert self._proc is None, "started twice"
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a ^C of pytest does not reach it first
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_stdout(self._proc.stdout)),
            asyncio.create_task(self._read_stderr(self._proc.stderr)),
        ]
        await self._wait(lambda: self.node is not None, timeout_s, "its node (STARTED)")
        return self

    async def wait_leading(self, timeout_s: float = 20.0) -> None:
        await self._wait(lambda: self.is_leading, timeout_s, "leadership (LEADER)")

    async def kill(self) -> None:
        """SIGKILL the process: a crash. Its session lives on until ZooKeeper expires it."""
        proc = self._require_proc()
        self._killed = True
        self._leading = False
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await self._join_readers()

    async def close(self, timeout_s: float = 20.0) -> None:
        """Leave gracefully: ``close`` on stdin, then stdin closed; the recipe deletes its node."""
        proc = self._require_proc()
        if proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(b"close\n")
                await proc.stdin.drain()
                proc.stdin.close()
        try:
            async with asyncio.timeout(timeout_s):
                returncode = await proc.wait()
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"{self!r} did not exit {timeout_s:g} s after close") from None
        await self._join_readers()
        assert returncode == 0, f"{self!r} exited {returncode}:\n{self.stderr_tail()}"

    async def discard(self) -> None:
        """Teardown: SIGKILL it if it still runs; never raises."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.kill()
        for task in self._readers:
            task.cancel()

    def _require_proc(self) -> asyncio.subprocess.Process:
        assert self._proc is not None, "not started"
        return self._proc

    async def _join_readers(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.gather(*self._readers, return_exceptions=True)

    async def _wait(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.exited and not predicate():
                raise AssertionError(
                    f"{self!r} exited ({self._require_proc().returncode}) before {what}; "
                    f"stdout {[(x.kind, x.rest) for x in self.lines]}; stderr:\n{self.stderr_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout_s:g} s waiting for {self!r} to reach {what}; "
                    f"stdout {[(x.kind, x.rest) for x in self.lines]}; stderr:\n{self.stderr_tail()}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.1)):
                    await self._changed.wait()

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        try:
            while raw := await stream.readline():
                kind, _, rest = raw.decode("utf-8", "replace").strip().partition(" ")
                self.lines.append(Line(time.monotonic(), kind, rest))
                if kind == "STARTED":
                    self.node = rest
                elif kind == "LEADER":
                    self._leading = not self._killed
                elif kind in ("FOLLOWER", "CLOSING", "CLOSED"):
                    self._leading = False
                self._changed.set()
                for listener in self.listeners:
                    listener(self, self.lines[-1])
        finally:
            self._leading = False
            self._changed.set()

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())


def kazoo_participant(hosts: str, path: str, identity: str, session_timeout_s: float) -> ForeignParticipant:
    """A kazoo ``Election`` contender (see :func:`_run_kazoo`); call ``await .start()``."""
    argv = [
        sys.executable,
        "-u",
        str(Path(__file__).resolve()),
        hosts,
        path,
        identity,
        str(session_timeout_s),
    ]
    return ForeignParticipant("kazoo", identity, argv)


def curator_participant(
    runtime: CuratorRuntime, hosts: str, path: str, identity: str, session_timeout_s: float
) -> ForeignParticipant:
    """A Curator ``LeaderLatch`` contender (java/LatchParticipant.java); call ``await .start()``."""
    argv = [
        runtime.java,
        *_JVM_OPTIONS,
        "-cp",
        runtime.classpath,
        JAVA_CLASS,
        hosts,
        path,
        identity,
        str(round(session_timeout_s * 1000)),
    ]
    return ForeignParticipant("curator", identity, argv)


def _run_kazoo(hosts: str, path: str, identity: str, session_timeout_s: float) -> int:
    """The kazoo participant's process: ``client.Election(path, identity).run(lead)``.

    ``lead`` prints LEADER and blocks until stdin says ``close``/``resign`` or ends; returning
    from it releases kazoo's lock (deletes the node). CLOSING is printed before that.
    """
    from kazoo.client import KazooClient

    out = threading.Lock()

    def say(kind: str, rest: str | None = None) -> None:
        with out:
            print(kind, rest if rest is not None else int(time.time() * 1000), flush=True)

    client = KazooClient(hosts=hosts, timeout=session_timeout_s)
    client.start(timeout=30)
    election = client.Election(path, identity)
    leave = threading.Event()

    def lead() -> None:
        say("LEADER")
        leave.wait()
        say("CLOSING")  # before run() releases the lock

    runner = threading.Thread(target=election.run, args=(lead,), name="election", daemon=True)
    runner.start()
    deadline = time.monotonic() + 30
    while election.lock.node is None:
        if time.monotonic() > deadline or not runner.is_alive():
            print("no lock node after 30 s", file=sys.stderr, flush=True)
            return 3
        time.sleep(0.005)
    say("STARTED", f"{election.lock.path}/{election.lock.node}")

    for line in sys.stdin:
        if line.strip() in ("close", "resign"):
            break
    leave.set()
    election.cancel()  # if not (yet) leading: stop waiting, delete our node
    runner.join(30)
    if runner.is_alive():
        print("election.run did not return", file=sys.stderr, flush=True)
        return 4
    say("CLOSING")  # idempotent for the reader; says so also when we never led
    client.stop()
    client.close()
    say("CLOSED")
    return 0


if __name__ == "__main__":
    sys.exit(_run_kazoo(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
