"""run_hook and HookRunner with real shell commands: output, timeouts, order, closing."""

from __future__ import annotations

import asyncio
import shlex
import signal
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from _processes import SOON_S, dead, until
from structlog.testing import LogCapture

from election_daemon.daemon.hooks import HookRunner, previous_leader, run_hook, transition_environment
from election_daemon.errors import ConfigError
from election_daemon.library.events import Event, Reason
from election_daemon.library.transitions import ElectionState, Transition

pytestmark = pytest.mark.timeout(60)


def events(capture: LogCapture, name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in capture.entries if entry["event"] == name]


async def test_a_hook_gets_its_environment_and_its_output_is_logged(log: Any, capture: LogCapture) -> None:
    result = await run_hook(
        'echo "token=$ELECTION_TOKEN"; echo oops >&2; exit 3',
        env={"ELECTION_TOKEN": "17"},
        timeout_s=SOON_S,
        log=log,
        name="elected",
    )
    assert (result.name, result.exit_status, result.timed_out, result.ok) == ("elected", 3, False, False)
    assert (result.stdout, result.stderr) == ("token=17\n", "oops\n")
    [started] = events(capture, "hook_started")
    [finished] = events(capture, "hook_finished")
    assert started["pid"] == started["pgid"] == finished["pid"]
    assert finished["log_level"] == "warning"
    assert (finished["exit_code"], finished["stdout"], finished["stderr"]) == (3, "token=17\n", "oops\n")
    assert finished["duration_s"] >= 0


async def test_a_successful_hook_is_ok_and_logged_at_info(log: Any, capture: LogCapture) -> None:
    result = await run_hook("true", env={}, timeout_s=SOON_S, log=log, name="revoked")
    assert result.ok
    assert events(capture, "hook_finished")[0]["log_level"] == "info"


async def test_output_keeps_only_the_last_4_kib(log: Any) -> None:
    result = await run_hook(
        "head -c 100000 /dev/zero | tr '\\0' a; echo END", env={}, timeout_s=SOON_S, log=log, name="big"
    )
    assert result.stdout.endswith("a" * 100 + "END\n")
    assert result.stdout.startswith("[95908 bytes dropped]...")
    assert len(result.stdout) == len("[95908 bytes dropped]...") + 4096


async def test_a_hook_that_overruns_is_killed_with_its_whole_group(
    tmp_path: Path, log: Any, capture: LogCapture, groups: list[int]
) -> None:
    background = tmp_path / "background"
    command = f"echo started; sleep 600 & echo $! > {shlex.quote(str(background))}; sleep 600"
    started = time.monotonic()
    result = await run_hook(command, env={}, timeout_s=0.5, log=log, name="slow")
    elapsed = time.monotonic() - started
    groups.append(events(capture, "hook_started")[0]["pgid"])
    assert result.timed_out
    assert result.exit_status == 128 + signal.SIGKILL
    assert result.stdout == "started\n"  # what it wrote before the kill is kept
    assert 0.5 <= elapsed < SOON_S
    background_pid = int(background.read_text())
    await until(lambda: dead(background_pid), "the background job to die of its SIGKILL")
    assert [e["event"] for e in capture.entries] == ["hook_started", "hook_timeout", "hook_finished"]


async def test_a_hook_that_cannot_start_is_reported_not_raised(log: Any, capture: LogCapture) -> None:
    result = await run_hook("true", env={"BAD": "nul\0byte"}, timeout_s=SOON_S, log=log, name="elected")
    assert result.exit_status is None
    assert not result.ok
    [finished] = capture.entries
    assert finished["event"] == "hook_finished"
    assert "null byte" in finished["reason"]


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"timeout_s": 0.0}, "timeout_s"), ({"max_pending": 0}, "max_pending")]
)
def test_runner_configuration_is_validated(kwargs: dict[str, Any], field: str, log: Any) -> None:
    settings: dict[str, Any] = {"timeout_s": 1.0, **kwargs}
    with pytest.raises(ConfigError) as caught:
        HookRunner(log=log, **settings)
    assert caught.value.field == field


async def test_runner_runs_hooks_in_submission_order_without_making_the_caller_wait(
    tmp_path: Path, log: Any
) -> None:
    journal = tmp_path / "journal"
    runner = HookRunner(timeout_s=SOON_S, log=log)
    append = f">> {shlex.quote(str(journal))}"
    runner.submit("elected", f"sleep 0.3; echo elected {append}", {})
    for name in ("revoked", "elected-again", "revoked-again"):
        runner.submit(name, f'echo "$HOOK" {append}', {"HOOK": name})
    assert runner.pending == 4  # submit() returned before the first hook even started
    await asyncio.wait_for(runner.join(), SOON_S)
    assert journal.read_text().split() == ["elected", "revoked", "elected-again", "revoked-again"]
    assert runner.pending == 0
    await runner.close()


async def test_runner_drops_the_oldest_queued_hook_beyond_its_bound(
    tmp_path: Path, log: Any, capture: LogCapture
) -> None:
    journal = tmp_path / "journal"
    runner = HookRunner(timeout_s=SOON_S, log=log, max_pending=2)
    for name in ("first", "second", "third"):
        runner.submit(name, f'echo "$HOOK" >> {shlex.quote(str(journal))}', {"HOOK": name})
    await runner.close()
    assert journal.read_text().split() == ["second", "third"]
    [dropped] = events(capture, "hook_dropped")
    assert dropped["name"] == "first"


async def test_close_runs_what_was_submitted_then_refuses_more(
    tmp_path: Path, log: Any, capture: LogCapture
) -> None:
    journal = tmp_path / "journal"
    runner = HookRunner(timeout_s=SOON_S, log=log)
    runner.submit("revoked", f"sleep 0.2; echo revoked >> {shlex.quote(str(journal))}", {})
    await asyncio.wait_for(runner.close(), SOON_S)
    assert journal.read_text() == "revoked\n"
    runner.submit("late", "true", {})
    assert [e["name"] for e in events(capture, "hook_dropped")] == ["late"]
    assert runner.pending == 0


async def test_cancelling_close_kills_the_running_hook(
    tmp_path: Path, log: Any, capture: LogCapture, groups: list[int]
) -> None:
    shell_pid = tmp_path / "pid"
    runner = HookRunner(timeout_s=600, log=log)
    runner.submit("stuck", f"echo $$ > {shlex.quote(str(shell_pid))}; sleep 600", {})
    await until(lambda: shell_pid.exists() and shell_pid.read_text().endswith("\n"), "the hook to start")
    pid = int(shell_pid.read_text())
    groups.append(pid)
    closing = asyncio.create_task(runner.close())
    await asyncio.sleep(0)  # let close() start waiting
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await until(lambda: dead(pid), "the hook's shell to be killed")


# -- what a hook learns of its transition, and the order revocations impose -------------------


def transition(**overrides: Any) -> Transition:
    fields: dict[str, Any] = {
        "event": Event.REVOKED,
        "state": ElectionState.SUSPENDED,
        "previous_state": ElectionState.LEADING,
        "reason": Reason.LEASE_EXPIRED,
        "path": "/p",
        "id": "me",
        "node": "/p/n",
        "token": 7,
        "session_id": 1,
        "timestamp": 0.0,
        "monotonic_s": 0.0,
        **overrides,
    }
    return Transition(**fields)


def test_a_hook_learns_the_event_state_and_reason() -> None:
    assert transition_environment(transition()) == {
        "ELECTION_EVENT": "revoked",
        "ELECTION_STATE": "suspended",
        "ELECTION_REASON": "lease_expired",
        "ELECTION_PREVIOUS_LEADER": "",
    }
    elected = transition(event=Event.ELECTED, state=ElectionState.LEADING, reason=None)
    assert transition_environment(elected)["ELECTION_REASON"] == ""


def test_the_previous_leader_comes_from_the_published_term() -> None:
    assert previous_leader(transition()) == ""
    elected = transition(
        event=Event.ELECTED, state=ElectionState.LEADING, reason=None, previous_id="billing-b"
    )
    assert previous_leader(elected) == "billing-b"
    assert transition_environment(elected)["ELECTION_PREVIOUS_LEADER"] == "billing-b"


async def test_a_hook_waits_for_its_gate_and_every_later_hook_waits_too(tmp_path: Path, log: Any) -> None:
    journal = tmp_path / "journal"
    append = f">> {shlex.quote(str(journal))}"
    runner = HookRunner(timeout_s=SOON_S, log=log)
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    runner.submit("elected", f"echo elected {append}", {})
    runner.submit("revoked", f"echo revoked {append}", {}, after=gate)
    runner.submit("change", f"echo change {append}", {})
    await until(lambda: journal.exists() and journal.read_text() == "elected\n", "the first hook")
    await asyncio.sleep(0.3)
    assert journal.read_text() == "elected\n", "a gated hook, or one after it, ran before its gate"
    assert runner.pending == 2
    gate.set_result(None)
    await asyncio.wait_for(runner.join(), SOON_S)
    assert journal.read_text().split() == ["elected", "revoked", "change"]
    await runner.close()


async def test_a_failed_gate_still_lets_the_hook_run(tmp_path: Path, log: Any) -> None:
    journal = tmp_path / "journal"
    runner = HookRunner(timeout_s=SOON_S, log=log)
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    runner.submit("revoked", f"echo revoked >> {shlex.quote(str(journal))}", {}, after=gate)
    gate.set_exception(RuntimeError("the group survived SIGKILL"))
    await asyncio.wait_for(runner.close(), SOON_S)
    assert journal.read_text() == "revoked\n"
