"""The daemon: one participant that runs a leader-only command while, and only while, it leads.

It consumes the election's events and drives process control (Patroni's split: the
election knows nothing of processes). The order of things is the safety story:

- elected: the child starts only once the previous term's child group is gone and only if
  leadership is still held at that instant;
- revoked (any reason): the child group gets SIGTERM at once and SIGKILL after the kill
  grace, from an ``on_revoked`` coroutine, so ``resign()`` and ``stop()`` wait for it
  before deleting our node;
- SIGTERM/SIGINT: stop the child at once, then leave (delete our node, close the session)
  the moment its group is gone, so the next contender takes over at once; hooks of that
  revocation run only after the leave;
- the child exits by itself: resign, then exit with its status or contend again;
- the daemon is SIGKILLed: the lifeline process kills the child group;
- the election's own loop fails for good (event ``failed``, ``election.failure`` an
  :class:`InternalError`): it has revoked leadership, so the child group is stopped by then;
  the daemon exits with :attr:`ExitCode.ELECTION_FAILED`;
- the command cannot be started for want of resources (EMFILE, ENFILE, ...): retried with
  backoff while leadership lasts, then leadership is given up (resign) so that another
  participant runs it; never the "command does not exist" exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable
from typing import Any

import prometheus_client

from election_daemon.daemon.config import ChildExitPolicy, DaemonConfig
from election_daemon.daemon.endpoints import Endpoints, start_endpoints
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.hooks import HookRunner, transition_environment
from election_daemon.daemon.lifeline import Lifeline
from election_daemon.daemon.logs import level_of
from election_daemon.daemon.metrics import ElectionMetrics
from election_daemon.daemon.outage import OutageReporter, interval_for
from election_daemon.daemon.supervisor import ChildExit, ChildResourceError, ChildSupervisor
from election_daemon.daemon.systemd import SystemdNotifier, Watchdog
from election_daemon.errors import (
    ChildError,
    ConfigError,
    ConnectTimeoutError,
    ElectionError,
    InternalError,
    SessionTimeoutError,
    TLSError,
    ZooKeeperError,
)
from election_daemon.library.election import Election, ElectionState, Term, Transition
from election_daemon.library.events import REQUESTED_REVOCATIONS, Event
from election_daemon.library.session import SessionState

__all__ = ["Daemon"]

# Starting the command when the system is out of file descriptors or processes: retry with
# backoff while leading, for at most this long (or the session timeout, if longer), then resign.
_SPAWN_RETRY_FIRST_S = 0.05
_SPAWN_RETRY_MAX_S = 1.0
_SPAWN_RETRY_FOR_S = 5.0
# While ZooKeeper is in trouble, systemd's STATUS= is refreshed this often (it counts seconds).
_STATUS_REFRESH_S = 1.0


class Daemon:
    """Runs one participant of ``config.path`` until told to stop; :meth:`run` gives the exit code."""

    def __init__(
        self,
        config: DaemonConfig,
        *,
        log: Any,
        notifier: SystemdNotifier,
        supervisor: ChildSupervisor | None,
        hooks: HookRunner,
        lifeline: Lifeline | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.notifier = notifier
        self.supervisor = supervisor
        self.lifeline = lifeline
        self.hooks = hooks
        self.election = Election(
            config.hosts,
            config.path,
            identity=config.identity,
            data=config.data,
            session_timeout_s=config.session_timeout_s,
            connect_timeout_s=config.connect_timeout_s,
            priority=config.priority,
            recipe=config.recipe.value,
            tls=config.tls_context,
            auth=config.auth[0] if config.auth else None,
            acl=config.acl,
        )
        self._exit = asyncio.Event()
        self._exit_code: int = ExitCode.OK
        self._child_stop: asyncio.Future[ChildExit | None] | None = None
        self._child_watch: asyncio.Task[None] | None = None
        self._child_term: Term | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._revocation_gate: asyncio.Future[None] | None = None
        """Opened once the last revocation's command group is gone; its hooks wait for it."""
        self._gates_after_leave: list[asyncio.Future[None]] = []
        """Gates of revocations while shutting down: opened once the election has left."""
        self._elected_once = False
        self._held_elected: Transition | None = None
        """An ``elected`` edge whose line, status and hooks wait until its command is spawned."""
        self._hook_tokens: list[int | None] = []
        self.failure: str | None = None
        """One line saying why the daemon gave up, for stderr."""
        # Process-wide: no counter of this process exports a _created series (noise to scrape).
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.metrics = ElectionMetrics(
            self.election,
            registry=prometheus_client.REGISTRY,
            command_running=(lambda: self.child_pid is not None) if supervisor is not None else None,
        )
        self._endpoints: Endpoints | None = None

    # -- what the endpoints show ----------------------------------------------------

    @property
    def metrics_registry(self) -> prometheus_client.CollectorRegistry:
        return self.metrics.registry

    @property
    def child_pid(self) -> int | None:
        s = self.supervisor
        return s.pid if s is not None and s.running else None

    # -- the view every log line carries ---------------------------------------------

    def log_context(self) -> dict[str, Any]:
        """The schema keys for lines that are not transitions (child and hook events)."""
        e = self.election
        # After a revocation, child events still belong to the term the child ran for, and a
        # hook's lines to the term of the transition that ran it (its ELECTION_TOKEN).
        term = e.term or self._child_term
        token = term.token if term is not None else self._running_hook_token()
        try:
            sid = e.session.session_id
        except ElectionError:  # never started
            sid = None
        return {
            "state": e.state.value,
            "path": e.path,
            "id": e.identity,
            "node": e.node,
            "token": token,
            "session_id": f"0x{sid:x}" if sid else None,
        }

    def _running_hook_token(self) -> int | None:
        """The token of the hook running now: hooks run one at a time, in submission order."""
        tokens = self._hook_tokens
        del tokens[: max(0, len(tokens) - self.hooks.pending)]
        return tokens[0] if tokens else None

    # -- running -----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        self.election.add_listener(self._on_transition)
        self.election.on_elected(self._on_elected)
        self.election.on_revoked(self._on_revoked)
        for warning in self.config.warnings:
            self.log.warning(Event.CONFIG_WARNING, reason=warning)
        if self.config.try_s is not None:
            self._spawn(self._give_up_unless_elected(self.config.try_s))
        try:
            if self.config.http_address is not None:
                # Before joining: a port already taken is a usage error, not a reason to lead.
                try:
                    self._endpoints = await start_endpoints(self, *self.config.http_address)
                except ConfigError as e:
                    return self._fail(ExitCode.USAGE, Event.HTTP_FAILED, e)
                self.log.info(Event.HTTP_LISTENING, url=self._endpoints.url)
            # A signal while still connecting must not wait out --connect-timeout.
            join = asyncio.ensure_future(self._join())
            exit_requested = asyncio.ensure_future(self._exit.wait())
            await asyncio.wait([join, exit_requested], return_when=asyncio.FIRST_COMPLETED)
            if not join.done():
                join.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await join
                return self._exit_code
            exit_requested.cancel()
            code = join.result()
            if code is not None:
                return code
            self.notifier.ready()
            self._report_outages()
            self._spawn(self._watchdog())
            await self._exit.wait()
            return self._exit_code
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _give_up_unless_elected(self, try_s: float) -> None:
        """--try: exit with NOT_ELECTED, the command never run, unless elected within ``try_s``."""
        await asyncio.sleep(try_s)
        if self._elected_once or self._exit.is_set():
            return
        self.failure = f"not elected within {try_s:g} s (--try): the command did not run"
        self.log.warning(Event.NOT_ELECTED, reason=self.failure)
        self.request_exit(ExitCode.NOT_ELECTED)

    def _report_outages(self) -> None:
        """From here on, an outage is never silent for long (``still_disconnected``)."""
        try:
            session = self.election.session
        except ElectionError:  # no session to watch
            return
        OutageReporter(session, self.log, interval_s=interval_for(self.config.session_timeout_s)).start()

    async def _join(self) -> int | None:
        try:
            await self.election.start()
        except ConnectTimeoutError as e:
            return self._fail(ExitCode.ZK_UNREACHABLE, Event.ZOOKEEPER_UNREACHABLE, e)
        except TLSError as e:
            return self._fail(ExitCode.TLS_FAILED, Event.ZOOKEEPER_UNREACHABLE, e)
        except SessionTimeoutError as e:
            # Refused by the library before our node entered the queue: never elected.
            return self._fail(
                ExitCode.ZK_REFUSED, Event.SESSION_TIMEOUT_REFUSED, ConfigError("--session-timeout", str(e))
            )
        except ZooKeeperError as e:  # NoAuthError, AuthFailedError, DataTooLargeError, ...
            return self._fail(ExitCode.ZK_REFUSED, Event.ZOOKEEPER_REFUSED, e)
        except InternalError as e:
            return self._fail(ExitCode.ELECTION_FAILED, Event.ELECTION_FAILED, e)
        return None

    def _fail(self, code: ExitCode, event: Event, error: Exception) -> int:
        self.failure = str(error)
        self.log.error(event, reason=self.failure)
        self._exit_code = code
        return int(code)

    def request_exit(self, code: int) -> None:
        """Ask :meth:`run` to shut down and return ``code`` (the first request wins)."""
        if not self._exit.is_set():
            self._exit_code = code
            self._exit.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        self.log.info(Event.SIGNAL_RECEIVED, reason=sig.name)
        if not self._exit.is_set() and self.child_pid is not None:
            # The command goes first in any case (our node only once its group is gone): its
            # SIGTERM goes now, not after the shutdown's and the revocation's own steps (about
            # 1 ms measured). The revocation's stop then waits for this one.
            self._begin_child_stop("stopped")
        self.request_exit(ExitCode.OK)

    async def _shutdown(self) -> None:
        self._announce_held()  # normally done within the elected edge already
        self.notifier.stopping()
        if self.election.state is ElectionState.LEADING:
            self.notifier.status("stopping: handing over leadership")
        # Child first (on_revoked awaits it), then the session: the next contender starts
        # only when our node goes, and that is after our child is gone.
        try:
            await self.election.stop()
        except ElectionError as e:
            # A failed election (InternalError, NoAuthError) says so again here: it has been
            # logged and turned into the exit code already. The child is stopped below anyway.
            if e is not getattr(self.election, "failure", None) and not isinstance(e, InternalError):
                self.log.warning(Event.STOP_FAILED, reason=f"{type(e).__name__}: {e}")
        # Our node is gone (or could not be deleted): the revocation's hooks may run now.
        gates, self._gates_after_leave = self._gates_after_leave, []
        for gate in gates:
            _open(gate)
        await self._stop_child("stopped")
        if self._endpoints is not None:
            await self._endpoints.close()
        _open(self._revocation_gate)  # never left shut: hooks.close() runs what was submitted
        await self.hooks.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- election events -------------------------------------------------------------

    def _on_transition(self, t: Transition) -> None:
        if t.event == Event.ELECTED and self._spawns_at_once():
            # The command goes first: _on_elected, which the election calls right after its
            # listeners, spawns it and then has this edge announced (_announce_held), before
            # child_started. The line keeps the edge's own times.
            self._elected_once = True
            self._held_elected = t
            return
        self._announce_held()
        self._announce(t)

    def _spawns_at_once(self) -> bool:
        """Whether the next elected edge spawns its command at once (see :meth:`_on_elected`)."""
        return self.supervisor is not None and _ended_well(self._child_stop) and not self._exit.is_set()

    def _announce_held(self) -> None:
        """Log (and notify, and hook) the held ``elected`` edge, if one is held."""
        held, self._held_elected = self._held_elected, None
        if held is not None:
            self._announce(held)

    def _announce(self, t: Transition) -> None:
        """The transition's log line, systemd status, hooks and exit decisions."""
        fields = {k: v for k, v in t.log_fields().items() if k != "event"}
        fields["timestamp"] = t.timestamp
        if t.event == "internal_error":
            # The loop's own failure: the traceback is what a bug report needs.
            fields["exc_info"] = t.error or False
        getattr(self.log, level_of(t))(t.event, **fields)
        self.notifier.status(self._status_text(t))
        if t.event == "failed":
            self._on_failed(t)
        if t.event == Event.ELECTED:
            self._elected_once = True
        self._submit_hooks(t)
        # --once: whatever ends leadership before the command exits ends the run.
        if (
            t.event == Event.REVOKED
            and (self.config.once or (self.config.exit_on_loss and t.reason not in REQUESTED_REVOCATIONS))
            and not self._exit.is_set()
        ):
            self.request_exit(ExitCode.LEADERSHIP_LOST)

    def _submit_hooks(self, t: Transition) -> None:
        """Queue the hooks of ``t``: ``--on-elected`` or ``--on-revoked``, then ``--on-change``.

        A revocation's hooks, and with them every later hook, wait until ``_on_revoked`` has
        stopped the command's process group: a revoked hook never runs beside the command.
        """
        if t.event == Event.TERM_RECORDED:
            return  # bookkeeping after `elected`, not a change of state: nothing to notify
        after = None
        if t.event == Event.REVOKED:
            # The election calls on_revoked right after this listener; _on_revoked takes the gate.
            after = self._revocation_gate = asyncio.get_running_loop().create_future()
        hooks = [
            (name, command)
            for name, command in (
                (Event.ELECTED, self.config.on_elected if t.event == Event.ELECTED else None),
                (Event.REVOKED, self.config.on_revoked if t.event == Event.REVOKED else None),
                ("change", self.config.on_change),
            )
            if command
        ]
        env = {**self._child_env(t.token, t.node), **transition_environment(t)}
        for name, command in hooks:
            self.hooks.submit(name, command, env, after=after)
            self._hook_tokens.append(t.token)

    def _on_failed(self, t: Transition) -> None:
        """The election stopped for good; leadership (and so the child) was revoked before."""
        failure = getattr(self.election, "failure", None)
        if self._exit.is_set():
            return
        self.failure = str(failure) if failure is not None else (t.reason or "the election failed")
        if isinstance(failure, ZooKeeperError):
            self.request_exit(ExitCode.ZK_REFUSED)
        else:
            self.request_exit(ExitCode.ELECTION_FAILED)

    def _status_text(self, t: Transition | None = None) -> str:
        """systemd's STATUS=: our role, then ZooKeeper's trouble if there is any, e.g.
        ``suspended /p; ZooKeeper session suspended for 12 s, lease expired``."""
        e = self.election
        state = e.state if t is None else t.state
        token = (e.term.token if e.term else None) if t is None else t.token
        if state is ElectionState.LEADING:
            role = f"leading {e.path} with token {token}"
        else:
            role = f"{state.value} {e.path}"
        trouble = self._zookeeper_trouble()
        return role if trouble is None else f"{role}; {trouble}"

    def _zookeeper_trouble(self) -> str | None:
        try:
            session = self.election.session
        except ElectionError:  # not started yet
            return None
        if session.state is SessionState.CONNECTED:
            return None
        for_s = time.monotonic() - session.last_change_monotonic
        trouble = f"ZooKeeper session {session.state.value} for {for_s:.0f} s"
        if session.state is SessionState.CONNECTING:  # no lease yet
            return trouble
        lease_s = session.lease_remaining_s()
        return f"{trouble}, lease expired" if lease_s <= 0 else f"{trouble}, lease {lease_s:.1f} s left"

    def _child_env(self, token: int | None, node: str | None) -> dict[str, str]:
        return {
            "ELECTION_TOKEN": "" if token is None else str(token),
            "ELECTION_PATH": self.config.path,
            "ELECTION_ID": self.election.identity,
            "ELECTION_NODE": node or "",
        }

    def _on_elected(self, term: Term) -> Awaitable[None] | None:
        # Not a coroutine function: the election calls it within the elected edge, right after
        # its listeners, and with nothing in the way the command is spawned here and now, not
        # a turn of the event loop later behind the election's own work (0.3 to 0.9 ms
        # measured). What must wait (an old group still stopping, retries) is returned.
        try:
            return self._start_term(term)
        finally:
            # Whatever happened, the edge is in the log before anything that follows it.
            self._announce_held()

    def _start_term(self, term: Term) -> Awaitable[None] | None:
        if self.supervisor is None:
            return None
        stop = self._child_stop
        if not _ended_well(stop):
            assert stop is not None
            return self._start_after(stop, term)
        # The very term, not only its token: a term resumed on the same node keeps its token,
        # and two elected edges of it must not start two children. Nor is a command started on
        # the way out (a signal, --try's deadline).
        if not self._is_current(term) or self._exit.is_set():
            return None
        self._child_term = term
        try:
            pid = self._spawn_child(term)
        except ChildError as e:
            return self._retry_start(term, e)
        return self._child_started(pid)

    async def _start_after(self, stop: asyncio.Future[ChildExit | None], term: Term) -> None:
        # A new term's child starts only after the old term's group is gone.
        await stop
        started = self._start_term(term)
        if started is not None:
            await started

    async def _retry_start(self, term: Term, error: ChildError) -> None:
        pid = await self._start_child(term, error)
        if pid is not None:
            started = self._child_started(pid)
            if started is not None:
                await started

    def _child_started(self, pid: int) -> Awaitable[None] | None:
        assert self.supervisor is not None
        self.metrics.command_started()
        self._count_exit(self.supervisor.wait())
        # Leadership may have ended while the child was being started.
        if not self.election.is_leader:
            return self._stop_child("revoked_during_start")
        self.log.debug(Event.CHILD_RUNNING, pid=pid)
        self._child_watch = asyncio.ensure_future(self._watch_child())
        return None

    def _spawn_child(self, term: Term) -> int:
        """Spawn the term's command; the held elected edge is announced right after the spawn."""
        assert self.supervisor is not None
        env = self._child_env(term.token, term.node)
        return self.supervisor.spawn(env, log_fields={"token": term.token}, on_spawned=self._announce_held)

    def _count_exit(self, exited: Awaitable[ChildExit]) -> None:
        def count(f: asyncio.Future[ChildExit]) -> None:
            if not f.cancelled() and f.exception() is None:
                result = f.result()
                self.metrics.command_exited(result.exit_status, stopped_by_daemon=result.stopped_by_us)

        asyncio.ensure_future(exited).add_done_callback(count)

    async def _start_child(self, term: Term, error: ChildError) -> int | None:
        """After the term's first spawn failed with ``error``: retry, or give up; the child's pid,
        or ``None`` if it was not started (and what follows is arranged)."""
        retry_for_s = max(_SPAWN_RETRY_FOR_S, self.config.session_timeout_s)
        give_up_at = time.monotonic() + retry_for_s
        delay = _SPAWN_RETRY_FIRST_S
        while True:
            if not isinstance(error, ChildResourceError):
                self.failure = str(error)
                self.log.error(Event.CHILD_FAILED, reason=self.failure)
                self.request_exit(ExitCode.COMMAND_FAILED)
                return None
            # Out of file descriptors or processes: the command is fine, the system is not.
            # Keep leading a little while and retry; then let someone else lead.
            if time.monotonic() + delay > give_up_at:
                self.log.error(Event.CHILD_FAILED, reason=f"{error}; giving up leadership")
                if self._is_current(term):
                    await self.election.resign()
                return None
            self.log.warning(Event.CHILD_START_RETRY, reason=str(error), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _SPAWN_RETRY_MAX_S)
            if not self._is_current(term):
                return None
            try:
                return self._spawn_child(term)
            except ChildError as e:
                error = e

    def _is_current(self, term: Term) -> bool:
        """Whether ``term`` (this very one: a resumed term is a new one with the same token) leads."""
        return self.election.term is term and self.election.is_leader

    def _on_revoked(self, reason: str) -> Awaitable[None]:
        # Not a coroutine function: the gate of this very revocation is taken now, synchronously
        # after the listener made it, before any other transition can replace it.
        gate, self._revocation_gate = self._revocation_gate, None
        return self._revoked(reason, gate)

    async def _revoked(self, reason: str, gate: asyncio.Future[None] | None) -> None:
        try:
            await self._stop_child(reason)
        finally:
            if self._exit.is_set() and gate is not None:
                # Shutting down: the election leaves (deletes our node, closes the session) the
                # moment this returns, and nothing may come before that request, not even a
                # hook's fork: _shutdown opens the gate once election.stop() has returned.
                self._gates_after_leave.append(gate)
            else:
                # The revocation's hooks run now that the group is gone (or could not be stopped).
                _open(gate)

    def _begin_child_stop(self, reason: str) -> None:
        """Stop the child's group: its SIGTERM is sent now, synchronously (see :meth:`_stop_child`)."""
        supervisor = self.supervisor
        if supervisor is None:
            return
        if self._child_watch is not None:
            self._child_watch.cancel()
            self._child_watch = None
        if self._child_stop is None or self._child_stop.done():
            self._child_stop = supervisor.begin_stop(reason)

    async def _stop_child(self, reason: str) -> None:
        supervisor = self.supervisor
        if supervisor is None:
            return
        self._begin_child_stop(reason)
        assert self._child_stop is not None
        # Shielded: a cancelled caller must not leave a half-killed group behind.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._child_stop)
        if not supervisor.running:
            self._child_term = None

    async def _watch_child(self) -> None:
        assert self.supervisor is not None
        result = await self.supervisor.wait()
        if result.stopped_by_us:
            return
        self._child_watch = None
        if self.config.on_child_exit is ChildExitPolicy.EXIT:
            self.request_exit(result.exit_status)
        else:
            await self.election.resign()

    # -- systemd watchdog ------------------------------------------------------------

    async def _watchdog(self) -> None:
        """WATCHDOG=1 while the daemon itself is healthy, whatever ZooKeeper's state (a restart
        cannot cure an outage, and would hit every daemon of the fleet at once); ZooKeeper's
        trouble goes to STATUS=, refreshed every second while it lasts."""
        if not self.notifier.enabled:
            return
        interval = self.notifier.watchdog_interval_s
        watchdog = None
        if interval is not None:
            watchdog = asyncio.ensure_future(
                Watchdog(self.notifier, interval_s=interval, unhealthy=self._unhealthy, log=self.log).run()
            )
        try:
            troubled = False
            while True:
                await asyncio.sleep(_STATUS_REFRESH_S)
                was_troubled, troubled = troubled, self._zookeeper_trouble() is not None
                if troubled or was_troubled:
                    self.notifier.status(self._status_text())
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _unhealthy(self) -> str | None:
        """Why the daemon itself is broken, or None. Its event loop is checked by the watchdog
        coroutine itself; the supervisor has no thread or process of its own (it runs on that
        loop); the lifeline guardian is a process, and without it a SIGKILLed daemon would leave
        its command's group running beside the next leader."""
        if self.lifeline is not None and not self.lifeline.alive:
            return f"the lifeline guardian {self.lifeline.guardian_pid} is gone"
        return None


def _ended_well(stop: asyncio.Future[ChildExit | None] | None) -> bool:
    """Whether no stop of an old group is pending or failed: a new child may start at once.

    A failed stop (a group that outlived SIGKILL) goes the slow way, which raises it again.
    """
    return stop is None or (stop.done() and not stop.cancelled() and stop.exception() is None)


def _open(gate: asyncio.Future[None] | None) -> None:
    if gate is not None and not gate.done():
        gate.set_result(None)
