"""The daemon: one participant that runs a leader-only command while, and only while, it leads.

It consumes the election's events and drives process control (Patroni's split: the
election knows nothing of processes). The order of things is the safety story:

- elected: the child starts only once the previous term's child group is gone and only if
  leadership is still held at that instant;
- revoked (any reason): the child group gets SIGTERM at once and SIGKILL after the kill
  grace, from an ``on_revoked`` coroutine, so ``resign()`` and ``stop()`` wait for it
  before deleting our node;
- SIGTERM/SIGINT: stop the child, then close the session so the next contender takes over
  at once;
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
from typing import Any

import prometheus_client

from election_daemon.daemon.config import ChildExitPolicy, DaemonConfig
from election_daemon.daemon.endpoints import Endpoints, start_endpoints
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.hooks import HookRunner
from election_daemon.daemon.metrics import ElectionMetrics
from election_daemon.daemon.supervisor import ChildExit, ChildResourceError, ChildSupervisor
from election_daemon.daemon.systemd import SystemdNotifier
from election_daemon.errors import (
    ChildError,
    ConfigError,
    ConnectTimeoutError,
    ElectionError,
    InternalError,
    TLSError,
    ZooKeeperError,
)
from election_daemon.library.election import Election, ElectionState, Term, Transition
from election_daemon.library.events import Event

__all__ = ["Daemon"]

# Revocations we or an operator asked for; any other one counts as a loss for --exit-on-loss.
_OWN_REVOCATIONS = frozenset({"stopped", "resigned", "step_down", "priority_handover"})
# Starting the command when the system is out of file descriptors or processes: retry with
# backoff while leading, for at most this long (or the session timeout, if longer), then resign.
_SPAWN_RETRY_FIRST_S = 0.05
_SPAWN_RETRY_MAX_S = 1.0
_SPAWN_RETRY_FOR_S = 5.0


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
    ) -> None:
        self.config = config
        self.log = log
        self.notifier = notifier
        self.supervisor = supervisor
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
        self._child_stop: asyncio.Task[ChildExit | None] | None = None
        self._child_watch: asyncio.Task[None] | None = None
        self._child_term: Term | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failure: str | None = None
        """One line saying why the daemon gave up, for stderr."""
        self.metrics = ElectionMetrics(
            self.election,
            registry=prometheus_client.REGISTRY,
            child_running=(lambda: self.child_pid is not None) if supervisor is not None else None,
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
        # After a revocation, child events still belong to the term the child ran for.
        term = e.term or self._child_term
        try:
            sid = e.session.session_id
        except ElectionError:  # never started
            sid = None
        return {
            "state": e.state.value,
            "path": e.path,
            "id": e.identity,
            "node": e.node,
            "token": term.token if term is not None else None,
            "session_id": f"0x{sid:x}" if sid else None,
        }

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
            self._spawn(self._watchdog())
            await self._exit.wait()
            return self._exit_code
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _join(self) -> int | None:
        try:
            await self.election.start()
        except ConnectTimeoutError as e:
            return self._fail(ExitCode.ZK_UNREACHABLE, Event.ZOOKEEPER_UNREACHABLE, e)
        except TLSError as e:
            return self._fail(ExitCode.TLS_FAILED, Event.ZOOKEEPER_UNREACHABLE, e)
        except ZooKeeperError as e:  # NoAuthError, AuthFailedError, DataTooLargeError, ...
            return self._fail(ExitCode.ZK_REFUSED, Event.ZOOKEEPER_REFUSED, e)
        except InternalError as e:
            return self._fail(ExitCode.ELECTION_FAILED, Event.ELECTION_FAILED, e)
        negotiated = self.election.negotiated_session_timeout_s
        if negotiated is not None and abs(negotiated - self.config.session_timeout_s) > 1e-3:
            return self._fail(
                ExitCode.ZK_REFUSED,
                Event.SESSION_TIMEOUT_REFUSED,
                ConfigError(
                    "--session-timeout",
                    f"{self.config.session_timeout_s:g} s is outside what the server accepts: "
                    f"it negotiated {negotiated:g} s",
                ),
            )
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
        self.request_exit(ExitCode.OK)

    async def _shutdown(self) -> None:
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
        await self._stop_child("stopped")
        if self._endpoints is not None:
            await self._endpoints.close()
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
        fields = {k: v for k, v in t.log_fields().items() if k != "event"}
        if t.event == "internal_error":
            # The loop's own failure: the traceback is what a bug report needs.
            self.log.error(t.event, exc_info=getattr(t, "error", None) or False, **fields)
        elif t.event == "failed":
            self.log.error(t.event, **fields)
        else:
            self.log.info(t.event, **fields)
        self.notifier.status(self._status_text(t))
        if t.event == "failed":
            self._on_failed(t)
        if t.event in ("elected", "revoked"):
            hook = self.config.on_elected if t.event == "elected" else self.config.on_revoked
            if hook:
                self.hooks.submit(t.event, hook, self._child_env(t.token, t.node))
        if (
            t.event == "revoked"
            and self.config.exit_on_loss
            and t.reason not in _OWN_REVOCATIONS
            and not self._exit.is_set()
        ):
            self.request_exit(ExitCode.LEADERSHIP_LOST)

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

    @staticmethod
    def _status_text(t: Transition) -> str:
        if t.state is ElectionState.LEADING:
            return f"leading {t.path} with token {t.token}"
        return f"{t.state.value} {t.path}"

    def _child_env(self, token: int | None, node: str | None) -> dict[str, str]:
        return {
            "ELECTION_TOKEN": "" if token is None else str(token),
            "ELECTION_PATH": self.config.path,
            "ELECTION_ID": self.election.identity,
            "ELECTION_NODE": node or "",
        }

    async def _on_elected(self, term: Term) -> None:
        if self.supervisor is None:
            return
        # A new term's child starts only after the old term's group is gone.
        if self._child_stop is not None:
            await self._child_stop
        # The very term, not only its token: a term resumed on the same node keeps its token,
        # and two elected edges of it must not start two children.
        if not self._is_current(term):
            return
        self._child_term = term
        pid = await self._start_child(term)
        if pid is None:
            return
        self.metrics.child_started()
        # Leadership may have ended while the child was being started.
        if not self.election.is_leader:
            await self._stop_child("revoked_during_start")
            return
        self.log.debug(Event.CHILD_RUNNING, pid=pid)
        self._child_watch = asyncio.ensure_future(self._watch_child())

    async def _start_child(self, term: Term) -> int | None:
        """Start the term's child; ``None`` if it was not started (and what follows is arranged)."""
        assert self.supervisor is not None
        retry_for_s = max(_SPAWN_RETRY_FOR_S, self.config.session_timeout_s)
        give_up_at = time.monotonic() + retry_for_s
        delay = _SPAWN_RETRY_FIRST_S
        while True:
            try:
                return await self.supervisor.start(self._child_env(term.token, term.node))
            except ChildResourceError as e:
                # Out of file descriptors or processes: the command is fine, the system is not.
                # Keep leading a little while and retry; then let someone else lead.
                if time.monotonic() + delay > give_up_at:
                    self.log.error(Event.CHILD_FAILED, reason=f"{e}; giving up leadership")
                    if self._is_current(term):
                        await self.election.resign()
                    return None
                self.log.warning(Event.CHILD_START_RETRY, reason=str(e), retry_in_s=delay)
            except ChildError as e:
                self.failure = str(e)
                self.log.error(Event.CHILD_FAILED, reason=self.failure)
                self.request_exit(ExitCode.COMMAND_FAILED)
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _SPAWN_RETRY_MAX_S)
            if not self._is_current(term):
                return None

    def _is_current(self, term: Term) -> bool:
        """Whether ``term`` (this very one: a resumed term is a new one with the same token) leads."""
        return self.election.term is term and self.election.is_leader

    async def _on_revoked(self, reason: str) -> None:
        await self._stop_child(reason)

    async def _stop_child(self, reason: str) -> None:
        supervisor = self.supervisor
        if supervisor is None:
            return
        if self._child_watch is not None:
            self._child_watch.cancel()
            self._child_watch = None
        if self._child_stop is None or self._child_stop.done():
            self._child_stop = asyncio.ensure_future(supervisor.stop(reason))
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
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            return
        while True:
            # Only a running loop gets here; only a live lease makes us worth keeping.
            session = self.election.session
            if session.lease_remaining_s() > 0:
                self.notifier.watchdog()
            await asyncio.sleep(interval / 2)
