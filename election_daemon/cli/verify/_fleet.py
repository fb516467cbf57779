"""The participants of a verify run: daemon processes, each behind its own proxies, and what their logs say.

Each participant is ``python -m election_daemon`` with the workload as its leader-only command.
It reaches every ZooKeeper server through a :class:`~election_daemon.testing.TcpProxy` of its
own, so that the nemesis can cut off or slow down one participant alone. Its stdout (its JSON
log and its command's lines) becomes history records as it arrives; the participant's view
(state, token, node, session, running command) is kept up to date from them, for the nemesis
to pick targets. Every process change made from outside is recorded too: a SIGTERM
(``daemon_terminated``), a SIGKILL (``daemon_killed``), an exit (``daemon_exited``), and, when a
daemon dies without reporting its command's exit, the moment its command's process group is
seen gone (``child_gone``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from election_daemon.cli.verify._history import Recorder, daemon_record, wall_seconds
from election_daemon.daemon.supervisor import process_group_alive
from election_daemon.testing import (
    DaemonEvent,
    TcpProxy,
    daemon_args,
    parse_event,
    signal_group,
    start_daemon,
)

__all__ = ["Fleet", "Participant"]

_WORKLOAD = Path(__file__).with_name("_workload.py")
_GONE_POLL_S = 0.005
_REAP_HANDOVER_S = 0.05
# How long a dead daemon's command may outlive it before we kill it ourselves.
_ORPHAN_DEADLINE_S = 5.0
_EXIT_WAIT_S = 10.0


@dataclass(slots=True)
class Participant:
    """One contender: its name, its proxies, its current daemon process and what its log says."""

    name: str
    proxies: list[TcpProxy]
    process: asyncio.subprocess.Process | None = None
    state: str | None = None
    token: int | None = None
    node: str | None = None
    session_id: int | None = None
    child_pgid: int | None = None
    """The running leader-only command's process group (its pid), from the log."""
    paused: bool = False
    wall_offset_s: float = field(default_factory=lambda: time.time() - time.monotonic())
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        """From start until its exit is seen (``exited``), which is before asyncio reaps it."""
        return self.process is not None and not self.exited.is_set()

    @property
    def leading(self) -> bool:
        """Leading with its command running, as far as its log tells."""
        return self.running and self.state == "leading" and self.child_pgid is not None


class Fleet:
    """Starts, watches, faults and stops the participants.

    :param servers: ``(host, port)`` of each ZooKeeper server; each participant gets a proxy per server.
    :param chroot: appended to each participant's connect string.
    :param log_dir: where each daemon's raw stdout and stderr are kept.
    :param daemon_options: more daemon flags (``--tls-*``, ``--auth-file``).
    """

    def __init__(
        self,
        *,
        recorder: Recorder,
        servers: Sequence[tuple[str, int]],
        chroot: str | None,
        path: str,
        session_timeout_s: float,
        count: int,
        register_socket: Path,
        write_interval_s: float,
        log_dir: Path,
        environ: Mapping[str, str],
        daemon_options: Sequence[str] = (),
    ) -> None:
        self.recorder = recorder
        self.path = path
        self.session_timeout_s = session_timeout_s
        self._chroot = chroot or ""
        self._register_socket = register_socket
        self._write_interval_s = write_interval_s
        self._log_dir = log_dir
        self._environ = dict(environ)
        self._daemon_options = tuple(daemon_options)
        self.participants = [
            Participant(f"p{index}", [TcpProxy(host, port).start() for host, port in servers])
            for index in range(1, count + 1)
        ]

    # -- queries ---------------------------------------------------------------------------

    def leader(self) -> Participant | None:
        """The participant leading with its command running; None if none or several claim it."""
        leaders = [p for p in self.participants if p.leading]
        return leaders[0] if len(leaders) == 1 else None

    async def wait_leader(self, timeout_s: float) -> Participant | None:
        """The leader once there is exactly one and every participant runs; None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and all(p.running for p in self.participants):
                return leader
            await asyncio.sleep(0.02)
        return None

    # -- lifecycle -------------------------------------------------------------------------

    async def start_all(self) -> None:
        for participant in self.participants:
            await self.start(participant)

    async def start(self, participant: Participant) -> None:
        """Start (or restart) the participant's daemon."""
        if participant.running:
            raise RuntimeError(f"{participant.name} is already running")
        hosts = ",".join(proxy.address for proxy in participant.proxies) + self._chroot
        command = [
            sys.executable,
            str(_WORKLOAD),
            "--socket",
            str(self._register_socket),
            "--interval",
            f"{self._write_interval_s:g}",
        ]
        args = daemon_args(
            hosts,
            self.path,
            identity=participant.name,
            session_timeout_s=self.session_timeout_s,
            # The workload's JSON lines reach the run on the daemon's stdout, as written.
            options=(
                "--on-child-exit",
                "rejoin",
                "--log-format",
                "json",
                "--child-output",
                "inherit",
                *self._daemon_options,
            ),
            command=command,
        )
        with (self._log_dir / f"{participant.name}.stderr").open("ab") as stderr:
            process = await start_daemon(args, env=self._environ, stderr=stderr)
        participant.process = process
        participant.state = participant.node = None
        participant.token = participant.session_id = participant.child_pgid = None
        participant.paused = False
        participant.exited = asyncio.Event()
        self.recorder.add(
            time.monotonic(), "fleet", "daemon_started", process=participant.name, daemon_pid=process.pid
        )
        participant.tasks = [
            asyncio.create_task(self._read(participant, process)),
            asyncio.create_task(self._watch_exit(participant, process)),
        ]

    async def kill(self, participant: Participant) -> None:
        """SIGKILL the daemon's process group and wait for its exit (its command is watched)."""
        process = participant.process
        if process is None or not participant.running:
            return
        self.recorder.add(
            time.monotonic(), "fleet", "daemon_killed", process=participant.name, daemon_pid=process.pid
        )
        signal_group(process.pid, signal.SIGKILL)
        await self.wait_exit(participant, _EXIT_WAIT_S)

    async def terminate(self, participant: Participant, timeout_s: float) -> bool:
        """SIGTERM the daemon, as a service manager stopping it would; True if it exited in time."""
        process = participant.process
        if process is None or not participant.running:
            return True
        self.recorder.add(
            time.monotonic(), "fleet", "daemon_terminated", process=participant.name, daemon_pid=process.pid
        )
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        return await self.wait_exit(participant, timeout_s)

    async def wait_exit(self, participant: Participant, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(participant.exited.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def pause(self, participant: Participant) -> None:
        """SIGSTOP the daemon's group and its command's group."""
        if participant.process is not None:
            signal_group(participant.process.pid, signal.SIGSTOP)
        if participant.child_pgid is not None:
            signal_group(participant.child_pgid, signal.SIGSTOP)
        participant.paused = True

    async def resume(self, participant: Participant, child_pgid: int | None, *, child_lead_s: float) -> None:
        """SIGCONT the command, then ``child_lead_s`` later the daemon: the command runs on stale
        for that long before its daemon can notice, and its writes must be refused."""
        if child_pgid is not None:
            signal_group(child_pgid, signal.SIGCONT)
            await asyncio.sleep(child_lead_s)
        if participant.process is not None:
            signal_group(participant.process.pid, signal.SIGCONT)
        participant.paused = False

    async def close(self) -> None:
        """Stop every daemon: followers first, then the leader, so that no term starts needlessly."""
        order = sorted(self.participants, key=lambda p: p.leading)
        for participant in order:
            if participant.paused:
                await self.resume(participant, participant.child_pgid, child_lead_s=0.0)
            if not await self.terminate(participant, self.session_timeout_s + _EXIT_WAIT_S):
                await self.kill(participant)
        for participant in self.participants:
            for task in participant.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for proxy in participant.proxies:
                proxy.close()

    # -- following a daemon ------------------------------------------------------------------

    async def _read(self, participant: Participant, process: asyncio.subprocess.Process) -> None:
        """Take every line of the daemon's stdout, which its command shares, until both are gone."""
        assert process.stdout is not None
        with (self._log_dir / f"{participant.name}.log").open("ab") as raw:
            while line := await process.stdout.readline():
                raw.write(line)
                self._take(participant, process.pid, line)

    async def _watch_exit(self, participant: Participant, process: asyncio.subprocess.Process) -> None:
        # Not Process.wait(): it returns only once every holder of the stdout pipe has closed
        # it, and an orphaned command holds it.
        returncode = await _exit_status(process)
        self.recorder.add(
            time.monotonic(),
            "fleet",
            "daemon_exited",
            process=participant.name,
            daemon_pid=process.pid,
            returncode=returncode,
        )
        child = participant.child_pgid
        participant.state = None
        participant.child_pgid = None
        participant.exited.set()
        if child is not None:
            await self._watch_orphan(participant.name, process.pid, child)

    async def _watch_orphan(self, name: str, daemon_pid: int, pgid: int) -> None:
        """Record when a dead daemon's command is gone; kill it if it outlives the deadline."""
        deadline = time.monotonic() + _ORPHAN_DEADLINE_S
        forced = False
        while process_group_alive(pgid):
            if time.monotonic() > deadline and not forced:
                signal_group(pgid, signal.SIGKILL)
                forced = True
            await asyncio.sleep(_GONE_POLL_S)
        self.recorder.add(
            time.monotonic(),
            "fleet",
            "child_gone",
            process=name,
            daemon_pid=daemon_pid,
            pid=pgid,
            forced=forced,
        )

    def _take(self, participant: Participant, daemon_pid: int, line: bytes) -> None:
        fields = parse_event(line, time.monotonic())
        if fields is None:
            return
        if fields.get("source") == "workload":
            t = fields.get("monotonic_s")
            if isinstance(t, int | float):
                record = {k: v for k, v in fields.items() if k != "monotonic_s"}
                self.recorder.add(float(t), process=participant.name, daemon_pid=daemon_pid, **record)
            return
        if isinstance(fields.get("monotonic_s"), int | float):
            with contextlib.suppress(ValueError):
                participant.wall_offset_s = wall_seconds(fields) - float(fields["monotonic_s"])
        try:
            record = daemon_record(
                fields,
                process=participant.name,
                daemon_pid=daemon_pid,
                wall_offset_s=participant.wall_offset_s,
            )
        except ValueError:
            return
        self.recorder.extend([record])
        self._update(participant, fields)

    @staticmethod
    def _update(participant: Participant, fields: DaemonEvent) -> None:
        event = fields["event"]
        if isinstance(fields.get("state"), str):
            participant.state = fields["state"]
        if event in ("elected", "revoked", "joined", "resumed", "node_lost", "session_lost", "reconnected"):
            participant.token = fields.get("token")
            participant.node = fields.get("node")
        session = fields.get("session_id")
        if isinstance(session, str) and session.startswith("0x"):
            participant.session_id = int(session, 16)
        if event == "child_started" and isinstance(fields.get("pgid"), int):
            participant.child_pgid = fields["pgid"]
        elif event == "child_exited" and fields.get("pgid") == participant.child_pgid:
            participant.child_pgid = None


async def _exit_status(process: asyncio.subprocess.Process) -> int | None:
    """Once the process has exited: its status as ``Popen.returncode`` has it (None if unknown).

    Waits on a pidfd and reads the status without reaping, which stays asyncio's business.
    """
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return process.returncode  # already reaped
    exited: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, wake)
    try:
        await exited
        # A readable pidfd means the process has exited: this returns at once.
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)  # noqa: ASYNC222
    except ChildProcessError:
        info = None  # asyncio's child watcher reaped it first
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    if info is None:
        # The watcher's thread hands the status over to the loop in a moment.
        await asyncio.sleep(_REAP_HANDOVER_S)
        return process.returncode
    return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status
