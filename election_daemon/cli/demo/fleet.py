"""The demo's processes: :class:`Fleet` starts the daemons alike with :mod:`election_daemon.testing`'s
fleet helpers and reads their stdout into the :class:`~election_daemon.cli.demo.model.Cluster`;
:class:`QueueObserver` reads the election queue into it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from election_daemon.cli.demo.config import ELECTION_PATH
from election_daemon.cli.demo.model import Cluster, FaultKind, Member
from election_daemon.errors import ZooKeeperError
from election_daemon.library._zk import ZooKeeper
from election_daemon.library.candidacy import read_queue
from election_daemon.testing import (
    daemon_args,
    daemon_environment,
    parse_event,
    read_lines,
    signal_group,
    start_daemon,
)

__all__ = ["EXIT_DEADLINE_S", "Fleet", "QueueObserver"]

# Prints a line a second while leading; its output passes through the daemon's stdout.
_LEADER_COMMAND = (
    "sh",
    "-c",
    'n=0; while :; do n=$((n+1)); echo "$ELECTION_ID leads, token $ELECTION_TOKEN: line $n"; sleep 1; done',
)

EXIT_DEADLINE_S = 10.0
"""How long a signalled daemon may take to exit."""
_QUEUE_POLL_S = 0.2
_OBSERVER_CONNECT_TIMEOUT_S = 10.0
_STOP_GRACE_S = 10.0
# After a daemon exits, its command and lifeline may hold the pipes a moment longer.
_PIPE_DRAIN_S = 2.0
_STDERR_TAIL_LINES = 20


@dataclass(eq=False)
class _Daemon:
    """A daemon process, the tasks reading its pipes, and the task that sees it end."""

    member: Member
    stderr_tail: deque[str]
    readers: list[asyncio.Task[None]]
    watcher: asyncio.Task[None]


class Fleet:
    """The daemon processes: started alike, their stdout read into the :class:`Cluster`.

    Each daemon runs in a session of its own, so that a terminal's Ctrl-C reaches only the demo,
    which then stops them itself, and so that one SIGKILL reaches its whole process group.
    """

    def __init__(self, hosts: str, session_timeout_s: float, cluster: Cluster) -> None:
        self._cluster = cluster
        self._args = daemon_args(
            hosts,
            ELECTION_PATH,
            session_timeout_s=session_timeout_s,
            # The command's lines on the daemon's stdout, as written ("... command says: ").
            options=("--log-format", "json", "--child-output", "inherit"),
        )
        self._env = daemon_environment({"PYTHONUNBUFFERED": "1"})
        self._daemons: list[_Daemon] = []

    async def start(self, participant_id: str) -> Member:
        # Dies with the demo (the kernel SIGKILLs it; its lifeline then kills its command).
        process = await start_daemon(
            [*self._args, "--id", participant_id, "--", *_LEADER_COMMAND], env=self._env
        )
        member = self._cluster.add(participant_id, process.pid)
        stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        assert process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.ensure_future(self._read_stdout(member, process.stdout)),
            asyncio.ensure_future(self._read_stderr(stderr_tail, process.stderr)),
        ]
        watcher = asyncio.ensure_future(self._watch(member, process, readers))
        self._daemons.append(_Daemon(member, stderr_tail, readers, watcher))
        return member

    def fault(self, member: Member, kind: FaultKind) -> float:
        """Stop (SIGTERM) or kill (SIGKILL to its process group) ``member``; returns the fault's time."""
        member.fault = kind
        at = time.monotonic()
        if kind is FaultKind.KILL:
            signal_group(member.pid, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, signal.SIGTERM)
        return at

    async def stop(self) -> None:
        """Stop every daemon still running: SIGTERM, followers first; SIGKILL after the grace."""
        running = [d for d in self._daemons if d.member.alive]
        followers = [d for d in running if not d.member.leading]
        leaders = [d for d in running if d.member.leading]
        # Followers first, so that stopping the leader does not hand over to a stopping daemon.
        for batch in (followers, leaders):
            for daemon in batch:
                self.fault(daemon.member, FaultKind.TERM)
            await _wait_all(batch, _STOP_GRACE_S)
        for daemon in self._daemons:
            if daemon.member.alive:
                signal_group(daemon.member.pid, signal.SIGKILL)
        await _wait_all(self._daemons, EXIT_DEADLINE_S)
        tasks = [task for d in self._daemons for task in (*d.readers, d.watcher)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stderr_tails(self) -> Iterator[tuple[Member, list[str]]]:
        for daemon in self._daemons:
            if daemon.stderr_tail:
                yield daemon.member, list(daemon.stderr_tail)

    async def _read_stdout(self, member: Member, stream: asyncio.StreamReader) -> None:
        async for line in read_lines(stream):
            event = parse_event(line, time.monotonic())
            if event is not None:
                self._cluster.record(member, event)
            elif line:
                self._cluster.output(member, line)

    @staticmethod
    async def _read_stderr(tail: deque[str], stream: asyncio.StreamReader) -> None:
        async for line in read_lines(stream):
            tail.append(line)

    async def _watch(
        self, member: Member, process: asyncio.subprocess.Process, readers: list[asyncio.Task[None]]
    ) -> None:
        returncode = await process.wait()
        # The last lines (revoked, child_exited) come before the exit; the pipes close once the
        # daemon's command and lifeline have gone too.
        await asyncio.wait(readers, timeout=_PIPE_DRAIN_S)
        self._cluster.process_ended(member, returncode)


async def _wait_all(daemons: Sequence[_Daemon], timeout_s: float) -> None:
    watchers = [d.watcher for d in daemons if not d.watcher.done()]
    if watchers:
        await asyncio.wait(watchers, timeout=timeout_s)


class QueueObserver:
    """Reads the election queue into the cluster model a few times a second, without joining it."""

    def __init__(self, hosts: str, path: str, cluster: Cluster, *, session_timeout_s: float) -> None:
        self._zk = ZooKeeper.create(hosts, chroot=None, session_timeout_s=session_timeout_s)
        self._path = path
        self._cluster = cluster
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> QueueObserver:
        await self._zk.start(connect_timeout_s=_OBSERVER_CONNECT_TIMEOUT_S)
        self._task = asyncio.ensure_future(self._poll())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._read()  # the queue as the show ends, for its last picture
        await self._zk.close()

    async def _poll(self) -> None:
        while True:
            await self._read()
            await asyncio.sleep(_QUEUE_POLL_S)

    async def _read(self) -> None:
        # A failed read keeps the last picture: the queue view is a nicety, not a verdict.
        with contextlib.suppress(ZooKeeperError):
            self._cluster.queue = await read_queue(self._zk, self._path)
