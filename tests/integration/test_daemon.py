"""The daemon as a real process on real ZooKeeper, with real faults: its child, signals, log, systemd, input.

Every daemon runs as ``python -m election_daemon`` (see :mod:`_daemons`); leader-only commands
are real processes (:mod:`_leader_child`, or ``sh``) that record what they saw in files. Times are
compared on ``time.monotonic()``, one clock for every process of the machine: the daemon logs it
as ``monotonic_s`` on transitions, the test child records it at start and on SIGTERM.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _daemons import (
    DaemonProcess,
    Daemons,
    LeaderChild,
    NotifyMessage,
    NotifySocket,
    group_alive,
    process_alive,
    run_daemon,
    wait_until,
)
from kazoo.client import KazooClient

from election_daemon import ElectionState
from election_daemon.daemon.config import MAX_DATA_BYTES
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.daemon.logs import SCHEMA_KEYS
from election_daemon.testing import TcpProxy, ZooKeeperEnsemble

T = 2.0
"""Session timeout of every daemon here."""

SLACK_S = 1.5
"""Added to latency bounds: a loaded 2-core machine runs other test suites at the same time."""

HANDOVER_S = T / 2
"""A graceful handover deletes the leader's node: the next leader must not wait for a session
expiry (T), only for the old child to stop and a watch to fire."""

LOSS_REASONS = ("lease_expired", "connection_lost")

ProxyFactory = Callable[[str, int], TcpProxy]


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with Daemons() as started:
        yield started
        # Captured output: pytest shows it only if the test failed.
        print(started.describe())


def proxied(zk_hosts: str, tcp_proxy: ProxyFactory) -> TcpProxy:
    """A proxy in front of the first server of ``zk_hosts``."""
    host, port = zk_hosts.split(",", maxsplit=1)[0].rsplit(":", 1)
    return tcp_proxy(host, int(port))


def leader_with_follower(
    daemons: Daemons,
    hosts: str,
    path: str,
    a_child: LeaderChild,
    *,
    leader_hosts: str | None = None,
    a_options: Sequence[str] = (),
) -> tuple[DaemonProcess, DaemonProcess, LeaderChild]:
    """Daemon ``a`` (on ``leader_hosts`` if given, with ``a_options``) leading with ``a_child``, and
    ``b`` following; b's child records whether a's child group was still alive when it started."""
    a = daemons.start(leader_hosts or hosts, path, identity="a", options=a_options, command=a_child.command())
    a.wait_for("elected")
    a_record = a_child.wait_started()
    b_child = LeaderChild(a_child.state_dir.with_name("b"), watch_groups=[a_record.pgid])
    b = daemons.start(hosts, path, identity="b", command=b_child.command())
    b.wait_for("joined")
    return a, b, b_child


def is_subsequence(wanted: Sequence[str], seen: Sequence[str]) -> bool:
    remaining = iter(seen)
    return all(name in remaining for name in wanted)


# -- the leader-only command -----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_child_environment_names_the_term(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    child = LeaderChild(tmp_path / "child")
    daemon = daemons.start(zk_hosts, zk_path, identity="env-test", command=child.command())
    elected = daemon.wait_for("elected")
    started = daemon.wait_for("child_started")
    record = child.wait_started()

    assert record.pid == record.pgid == started["pid"] == started["pgid"]
    assert started["token"] == elected["token"]
    assert record.env == {
        "ELECTION_TOKEN": str(elected["token"]),
        "ELECTION_PATH": zk_path,
        "ELECTION_ID": "env-test",
        "ELECTION_NODE": elected["node"],
    }
    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    try:
        _, stat = client.get(elected["node"])
    finally:
        client.stop()
        client.close()
    assert stat.czxid == elected["token"]
    assert stat.ephemeralOwner == int(elected["session_id"], 16)


@pytest.mark.timeout(30)
def test_sigterm_hands_over_once_the_child_is_gone(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    # A child that takes its time to stop, well within the kill grace: the handover must wait for it.
    stop_delay_s = 0.2
    a_child = LeaderChild(tmp_path / "a", stop_delay_s=stop_delay_s)
    a, b, b_child = leader_with_follower(
        daemons, zk_hosts, zk_path, a_child, a_options=["--kill-grace", str(T / 4)]
    )
    a_elected = a.wait_for("elected")

    term_sent_s = time.monotonic()
    a.terminate()
    assert a.wait() == ExitCode.OK
    b_record = b_child.wait_started()
    b_elected = b.wait_for("elected")
    a_stopped = a_child.wait_stopped()

    assert b_record.live_groups == [], "b's child started while a's child group was alive"
    assert a_stopped.stopped_monotonic is not None
    assert a_stopped.stopped_monotonic < b_record.started_monotonic
    assert b_elected["token"] > a_elected["token"]
    handover_s = b_record.started_monotonic - a_stopped.stopped_monotonic
    assert handover_s < HANDOVER_S, f"b's child started {handover_s:.3f} s after a's child stopped"
    assert a_stopped.stopped_monotonic - term_sent_s >= stop_delay_s

    assert a.wait_for("signal_received")["reason"] == "SIGTERM"
    assert a.wait_for("revoked")["reason"] == "stopped"
    stopped = a.wait_for("child_stopped")
    assert (stopped["reason"], stopped["escalated"]) == ("stopped", False)
    assert not a.stderr


@pytest.mark.timeout(30)
def test_the_next_leader_logs_elected_then_child_started_each_with_its_own_time(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    # The command is spawned within the elected edge and the elected line rendered after it:
    # the lines keep the operator's order, and the times are the edge's and the spawn's.
    a, b, b_child = leader_with_follower(daemons, zk_hosts, zk_path, LeaderChild(tmp_path / "a"))
    a.terminate()
    assert a.wait() == ExitCode.OK
    b_record = b_child.wait_started()
    names = [e.name for e in b.events()]
    assert is_subsequence(["predecessor_gone", "elected", "child_started"], names), names
    assert names.index("elected") < names.index("child_started")
    gone, elected, started = (b.wait_for(name) for name in ("predecessor_gone", "elected", "child_started"))
    assert gone["monotonic_s"] <= elected["monotonic_s"] <= started["monotonic_s"]
    # child_started is stamped at the spawn, before the command itself runs and records its start.
    assert started["monotonic_s"] <= b_record.started_monotonic
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in (gone, elected, started)]
    assert stamps == sorted(stamps), stamps
    assert started["pid"] == b_record.pid


@pytest.mark.timeout(30)
def test_sigterm_while_connecting_exits_promptly(daemons: Daemons, silent_hosts: str) -> None:
    daemon = daemons.start(silent_hosts, "/e", options=["--connect-timeout", "30"])
    daemon.wait_for("starting")
    daemon.terminate()
    daemon.wait_for("signal_received")
    assert daemon.wait(timeout_s=T + SLACK_S) == ExitCode.OK


@pytest.mark.timeout(40)
def test_loss_stops_the_whole_child_group_before_another_leads(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path, tcp_proxy: ProxyFactory
) -> None:
    proxy = proxied(zk_hosts, tcp_proxy)
    a_child = LeaderChild(tmp_path / "a", grandchild=True)
    a, b, b_child = leader_with_follower(daemons, zk_hosts, zk_path, a_child, leader_hosts=proxy.address)
    a_record = a_child.wait_started()
    assert a_record.grandchild is not None and process_alive(a_record.grandchild)

    proxy.cut()
    gone_s = wait_until(lambda: not group_alive(a_record.pgid), timeout_s=4 * T, what="a's child group to go")
    b_record = b_child.wait_started(timeout_s=4 * T + SLACK_S)
    revoked = a.wait_for("revoked")
    b_elected = b.wait_for("elected")

    assert revoked["reason"] in LOSS_REASONS
    assert revoked["monotonic_s"] < b_elected["monotonic_s"]
    assert b_record.live_groups == [], "b's child started while a's child group was alive"
    assert gone_s < b_record.started_monotonic
    assert not process_alive(a_record.pid) and not process_alive(a_record.grandchild)
    assert a.wait_for("child_stopped")["reason"] == revoked["reason"]
    assert b_elected["token"] > a.wait_for("elected")["token"]
    assert a.returncode is None, "a cut-off daemon stays in the election"


@pytest.mark.timeout(30)
def test_child_ignoring_sigterm_is_killed_after_the_grace(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    grace_s = 0.3
    child = LeaderChild(tmp_path / "child", ignore_term=True, grandchild=True)
    daemon = daemons.start(zk_hosts, zk_path, options=["--kill-grace", str(grace_s)], command=child.command())
    record = child.wait_started()

    term_sent_s = time.monotonic()
    daemon.terminate()
    gone_s = wait_until(lambda: not group_alive(record.pgid), timeout_s=10, what="the child group to go")
    assert daemon.wait() == ExitCode.OK

    assert grace_s <= gone_s - term_sent_s < grace_s + SLACK_S
    assert [e["signal"] for e in daemon.events("child_signalled")] == ["SIGTERM", "SIGKILL"]
    assert daemon.wait_for("child_exited")["signal"] == "SIGKILL"
    assert daemon.wait_for("child_stopped")["escalated"] is True


def exit_on_signal_file(go: Path, status: int) -> list[str]:
    """A command that exits with ``status`` once ``go`` exists."""
    return ["sh", "-c", f'while [ ! -e "$1" ]; do sleep 0.02; done; exit {status}', "sh", str(go)]


@pytest.mark.timeout(30)
def test_child_exit_status_becomes_the_exit_code_and_the_next_daemon_leads(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    a = daemons.start(zk_hosts, zk_path, identity="a", command=exit_on_signal_file(go, 7))
    a_elected = a.wait_for("elected")
    a.wait_for("child_started")
    b_child = LeaderChild(tmp_path / "b")
    b = daemons.start(zk_hosts, zk_path, identity="b", command=b_child.command())
    b.wait_for("joined")

    go.touch()
    assert a.wait() == 7
    b_elected = b.wait_for("elected")
    b_child.wait_started()

    exited = a.wait_for("child_exited")
    assert (exited["exit_code"], exited["stopped_by_us"]) == (7, False)
    assert b_elected["token"] > a_elected["token"]
    assert not a.stderr


@pytest.mark.timeout(30)
def test_child_exit_with_rejoin_resigns_and_stays(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    a = daemons.start(
        zk_hosts,
        zk_path,
        identity="a",
        options=["--on-child-exit", "rejoin"],
        command=exit_on_signal_file(go, 7),
    )
    a_elected = a.wait_for("elected")
    a.wait_for("child_started")
    b_child = LeaderChild(tmp_path / "b")
    b = daemons.start(zk_hosts, zk_path, identity="b", command=b_child.command())
    b.wait_for("joined")

    go.touch()
    b_elected = b.wait_for("elected")
    b_child.wait_started()
    assert a.wait_for("revoked")["reason"] == "resigned"
    rejoined = a.wait_for("joined", lambda e: e["reason"] == "resigned")

    assert rejoined["state"] == ElectionState.FOLLOWING.value
    assert a.wait_for("child_exited")["exit_code"] == 7
    assert len(a.events("child_started")) == 1
    assert b_elected["token"] > a_elected["token"]
    assert a.returncode is None
    a.terminate()
    assert a.wait() == ExitCode.OK


@pytest.mark.timeout(40)
@pytest.mark.parametrize("target", ["daemon", "daemon-group"])
def test_killed_daemon_leaves_no_leading_child(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path, target: str
) -> None:
    a_child = LeaderChild(tmp_path / "a", grandchild=True)
    a, b, b_child = leader_with_follower(daemons, zk_hosts, zk_path, a_child)
    a_elected = a.wait_for("elected")
    a_record = a_child.wait_started()
    assert a_record.grandchild is not None

    killed_s = time.monotonic()
    if target == "daemon":
        a.kill()
    else:
        a.kill_group(signal.SIGKILL)
    assert a.wait() == -signal.SIGKILL
    # The lifeline guardian sees its pipe close; the child's parent-death signal fires too.
    wait_until(lambda: not group_alive(a_record.pgid), timeout_s=T / 2, what="a's child group to die")
    assert not process_alive(a_record.grandchild)

    b_record = b_child.wait_started(timeout_s=T + 2 * SLACK_S)
    b_elected = b.wait_for("elected")
    assert b_record.live_groups == [], "b's child started while a's child group was alive"
    # ZooKeeper expires the killed daemon's session T after its last heartbeat.
    assert b_record.started_monotonic - killed_s < T + SLACK_S
    assert b_elected["token"] > a_elected["token"]


# -- the log -----------------------------------------------------------------------------------

_STATES = {state.value for state in ElectionState}
_SESSION_ID = re.compile(r"0x[0-9a-f]+")
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def check_schema(line: str, *, path: str, identity: str) -> dict[str, Any]:
    fields = json.loads(line)
    assert isinstance(fields, dict), line
    assert list(fields)[: len(SCHEMA_KEYS)] == list(SCHEMA_KEYS), line
    timestamp = fields["timestamp"]
    assert isinstance(timestamp, str) and timestamp.endswith("Z"), line
    assert datetime.fromisoformat(timestamp).utcoffset() == timedelta(0), line
    assert fields["state"] in _STATES and fields["previous_state"] in _STATES, line
    assert fields["session_id"] is None or _SESSION_ID.fullmatch(fields["session_id"]), line
    token = fields["token"]
    assert token is None or (isinstance(token, int) and not isinstance(token, bool)), line
    assert fields["node"] is None or fields["node"].startswith(path + "/"), line
    assert fields["reason"] is None or isinstance(fields["reason"], str), line
    assert (fields["path"], fields["id"]) == (path, identity), line
    assert _EVENT_NAME.fullmatch(fields["event"]), line
    return fields


@pytest.mark.timeout(30)
def test_json_log_lines_follow_the_schema(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    child = LeaderChild(tmp_path / "child")
    a = daemons.start(zk_hosts, zk_path, identity="a", command=child.command())
    a.wait_for("child_started")
    b = daemons.start(zk_hosts, zk_path, identity="b")
    b.wait_for("joined")
    a.terminate()
    assert a.wait() == ExitCode.OK
    b.wait_for("elected")
    b.terminate()
    assert b.wait() == ExitCode.OK

    for daemon, identity in ((a, "a"), (b, "b")):
        # The test child prints nothing: every line is the daemon's.
        lines = daemon.lines
        assert lines
        for line in lines:
            fields = check_schema(line, path=zk_path, identity=identity)
            if fields["event"] in ("starting", "connected", "joined", "elected", "revoked"):
                assert isinstance(fields["monotonic_s"], float), line
    names = [e.name for e in a.events()]
    assert is_subsequence(["starting", "connected", "joined", "elected", "child_started"], names), names
    assert is_subsequence(
        ["starting", "connected", "joined", "elected", "revoked"], [e.name for e in b.events()]
    )
    elected = a.wait_for("elected")
    assert (elected["state"], elected["previous_state"]) == ("leading", "following")
    assert elected["token"] is not None and elected["session_id"] is not None


@pytest.mark.timeout(30)
def test_console_log_format_is_human_text(daemons: Daemons, zk_hosts: str, zk_path: str) -> None:
    daemon = daemons.start(zk_hosts, zk_path, identity="console", options=["--log-format", "console"])
    line = daemon.wait_for_line(lambda text: re.search(r"\belected\b", text) is not None)
    daemon.terminate()
    assert daemon.wait() == ExitCode.OK

    assert daemon.events() == [], "console lines must not be JSON"
    assert not any(text.startswith("{") for text in daemon.lines)
    # One line per event: the state change and the token; the path only where it is news.
    assert "state=following→leading" in line and "token=" in line and "path=" not in line
    assert any(f"path={zk_path}" in text and "connected" in text for text in daemon.lines)


# -- systemd -----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_systemd_notify_protocol(daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path) -> None:
    watchdog_usec = 400_000
    child = LeaderChild(tmp_path / "child")
    with NotifySocket(tmp_path / "notify") as notify:
        daemon = daemons.start(
            zk_hosts,
            zk_path,
            identity="unit",
            command=child.command(),
            env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": str(watchdog_usec)},
            # As systemd does: WATCHDOG_PID names the main process, which exec keeps.
            exec_prefix=["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"],
        )
        ready = notify.wait_for("READY")
        leading = notify.wait_for("STATUS", lambda text: text.startswith("leading"))
        elected = daemon.wait_for("elected")
        pings = [notify.wait_for("WATCHDOG")]
        while len(pings) < 3:
            pings.append(notify.wait_for("WATCHDOG", start=notify.messages.index(pings[-1]) + 1, timeout_s=5))
        record = child.wait_started()
        daemon.terminate()
        stopping = notify.wait_for("STOPPING")
        assert daemon.wait() == ExitCode.OK

        messages = notify.messages
        before_ready = messages[: messages.index(ready)]

        def statuses(found: Sequence[NotifyMessage]) -> list[str]:
            return [m.fields["STATUS"] for m in found if "STATUS" in m.fields]

        assert ready.fields["READY"] == "1"
        assert any(text.startswith(("following", "leading")) for text in statuses(before_ready)), statuses(
            before_ready
        )
        assert leading.fields["STATUS"] == f"leading {zk_path} with token {elected['token']}"
        assert all(ping.fields["WATCHDOG"] == "1" for ping in pings)
        assert stopping.fields["STOPPING"] == "1"
        assert messages.index(stopping) > messages.index(pings[-1])
        assert sum("READY" in m.fields for m in messages) == 1
        assert {m.pid for m in messages} == {daemon.pid}, "only the main process may notify"
        assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(record.env)


# -- hooks -------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_hooks_run_with_the_term_environment(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    child = LeaderChild(tmp_path / "child")
    elected_env, revoked_env = tmp_path / "elected.env", tmp_path / "revoked.env"
    daemon = daemons.start(
        zk_hosts,
        zk_path,
        identity="hooked",
        options=[
            "--on-elected",
            f"env | grep '^ELECTION_' > {shlex.quote(str(elected_env))}",
            "--on-revoked",
            f"env | grep '^ELECTION_' > {shlex.quote(str(revoked_env))}",
        ],
        command=child.command(),
    )
    daemon.wait_for("hook_finished", lambda e: e["name"] == "elected")
    record = child.wait_started()
    daemon.terminate()
    assert daemon.wait() == ExitCode.OK

    def read_env(path: Path) -> dict[str, str]:
        return dict(line.split("=", 1) for line in path.read_text().splitlines())

    transition_variables = {
        "ELECTION_EVENT",
        "ELECTION_STATE",
        "ELECTION_REASON",
        "ELECTION_PREVIOUS_LEADER",
    }
    elected_hook, revoked_hook = read_env(elected_env), read_env(revoked_env)
    for hook_env in (elected_hook, revoked_hook):
        assert {k: v for k, v in hook_env.items() if k not in transition_variables} == record.env
    assert (elected_hook["ELECTION_EVENT"], elected_hook["ELECTION_STATE"]) == ("elected", "leading")
    assert (revoked_hook["ELECTION_EVENT"], revoked_hook["ELECTION_STATE"]) == ("revoked", "stopped")
    assert (elected_hook["ELECTION_REASON"], revoked_hook["ELECTION_REASON"]) == ("", "stopped")
    finished = daemon.events("hook_finished")
    assert [(e["name"], e["exit_code"], e["timed_out"]) for e in finished] == [
        ("elected", 0, False),
        ("revoked", 0, False),
    ]
    # Shutting down, nothing comes between the command's end and our node's deletion: the
    # revoked hook runs once the election has left (its 'stopped' line).
    names = [(e.name, e.get("name")) for e in daemon.events()]
    assert names.index(("child_stopped", None)) < names.index(("stopped", None))
    assert names.index(("stopped", None)) < names.index(("hook_started", "revoked"))


@pytest.mark.timeout(30)
def test_clear_env_keeps_secrets_from_the_command_and_hooks(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    child_env, hook_env = tmp_path / "child.env", tmp_path / "hook.env"
    daemon = daemons.start(
        zk_hosts,
        zk_path,
        identity="cleared",
        options=[
            "--clear-env",
            "--pass-env",
            "KEEP_ME",
            "--on-elected",
            f"env > {shlex.quote(str(hook_env))}",
        ],
        command=[
            "sh",
            "-c",
            f"env > {shlex.quote(str(child_env))}.tmp && mv {child_env}.tmp {child_env}; exec sleep 600",
        ],
        env={"SECRET_TOKEN": "hunter2", "KEEP_ME": "yes", "LC_MESSAGES": "C"},
    )
    elected = daemon.wait_for("elected")
    daemon.wait_for("hook_finished", lambda e: e["name"] == "elected")
    wait_until(child_env.exists, timeout_s=10, what="the child's environment")

    def read_env(path: Path) -> dict[str, str]:
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)

    for env in (read_env(child_env), read_env(hook_env)):
        assert "SECRET_TOKEN" not in env
        assert not any(name.startswith("ELECTION_DAEMON_") for name in env)
        assert env["KEEP_ME"] == "yes"
        assert env["LC_MESSAGES"] == "C"
        assert "PATH" in env
        assert env["ELECTION_TOKEN"] == str(elected["token"])
        assert env["ELECTION_ID"] == "cleared"
    daemon.terminate()
    assert daemon.wait() == ExitCode.OK


@pytest.mark.timeout(30)
@pytest.mark.parametrize("recipe", ["kazoo", "curator"])
def test_a_foreign_recipe_leads_with_only_its_identity_in_the_node(
    daemons: Daemons, zk_hosts: str, zk_path: str, recipe: str
) -> None:
    daemon = daemons.start(zk_hosts, zk_path, identity=f"{recipe}-daemon", options=["--recipe", recipe])
    elected = daemon.wait_for("elected")
    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    try:
        data, stat = client.get(elected["node"])
    finally:
        client.stop()
        client.close()
    assert data == f"{recipe}-daemon".encode()
    assert stat.czxid == elected["token"]
    daemon.terminate()
    assert daemon.wait() == ExitCode.OK


@pytest.mark.timeout(30)
def test_hanging_hook_is_killed_at_the_timeout(daemons: Daemons, zk_hosts: str, zk_path: str) -> None:
    hook_timeout_s = 0.5
    daemon = daemons.start(
        zk_hosts,
        zk_path,
        # The background sleep is in the hook's process group too: the whole group must go.
        options=["--on-elected", "sleep 60 & sleep 60", "--hook-timeout", str(hook_timeout_s)],
    )
    started = daemon.wait_for("hook_started")
    timed_out = daemon.wait_for("hook_timeout")
    finished = daemon.wait_for("hook_finished")
    wait_until(lambda: not group_alive(started["pgid"]), timeout_s=5, what="the hook's process group to go")

    assert timed_out["pgid"] == started["pgid"]
    assert (finished["timed_out"], finished["exit_code"]) == (True, 128 + signal.SIGKILL)
    assert hook_timeout_s <= finished["duration_s"] < hook_timeout_s + SLACK_S
    assert daemon.returncode is None, "a hanging hook must not stop the daemon"
    assert daemon.wait_for("elected")["state"] == "leading"


# -- --exit-on-loss ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_exit_on_loss_stops_the_child_and_exits(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path, tcp_proxy: ProxyFactory
) -> None:
    proxy = proxied(zk_hosts, tcp_proxy)
    child = LeaderChild(tmp_path / "child", grandchild=True)
    daemon = daemons.start(proxy.address, zk_path, options=["--exit-on-loss"], command=child.command())
    daemon.wait_for("elected")
    record = child.wait_started()

    proxy.cut()
    assert daemon.wait(timeout_s=4 * T + SLACK_S) == ExitCode.LEADERSHIP_LOST

    assert daemon.wait_for("revoked")["reason"] in LOSS_REASONS
    assert daemon.wait_for("child_stopped")["escalated"] is False
    assert not group_alive(record.pgid)
    assert not daemon.stderr


# -- bad input ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """What a bad-input case may build its arguments from."""

    tmp_path: Path
    silent_hosts: str
    """A listening socket that never answers: a ZooKeeper that does not respond."""

    def file(self, name: str, text: str, mode: int = 0o644) -> str:
        path = self.tmp_path / name
        path.write_text(text)
        path.chmod(mode)
        return str(path)


BASE = ["--hosts", "127.0.0.1:2181", "--path", "/bad/input"]


def _too_large_data(scene: Scene) -> list[str]:
    # Too large for argv (one argument is at most 128 KiB), so it comes from the config file.
    text = json.dumps("x" * MAX_DATA_BYTES)
    return [*BASE, "--config", scene.file("data.toml", f"data = '{text}'\n")]


BAD_INPUT = [
    pytest.param(
        lambda s: ["--hosts", "zk1:99999", "--path", "/e"], ExitCode.USAGE, "--hosts", id="malformed-hosts"
    ),
    pytest.param(
        lambda s: ["--hosts", "127.0.0.1:2181", "--path", "e/x"], ExitCode.USAGE, "--path", id="relative-path"
    ),
    pytest.param(lambda s: [*BASE, "--frobnicate"], ExitCode.USAGE, "unknown option", id="unknown-flag"),
    pytest.param(
        lambda s: [*BASE, "--", "no-such-program-for-election-tests"],
        ExitCode.COMMAND_FAILED,
        "not found",
        id="command-not-on-path",
    ),
    pytest.param(
        lambda s: [*BASE, "--", str(s.tmp_path / "missing")],
        ExitCode.COMMAND_FAILED,
        "not found",
        id="command-missing",
    ),
    pytest.param(
        lambda s: [*BASE, "--", s.file("script", "#!/bin/sh\n")],
        ExitCode.COMMAND_FAILED,
        "not executable",
        id="command-not-executable",
    ),
    pytest.param(_too_large_data, ExitCode.USAGE, "--data", id="data-too-large"),
    pytest.param(
        lambda s: [*BASE, "--once"], ExitCode.USAGE, "--once: needs a command", id="once-no-command"
    ),
    pytest.param(
        lambda s: [*BASE, "--try", "0", "--", "true"], ExitCode.USAGE, "--try: must be between", id="try-zero"
    ),
    pytest.param(
        lambda s: [*BASE, "--once", "--on-child-exit", "rejoin", "--", "true"],
        ExitCode.USAGE,
        "--once: exits with the command's status",
        id="once-with-rejoin",
    ),
    pytest.param(
        lambda s: [*BASE, "--config", str(s.tmp_path / "missing.toml")],
        ExitCode.USAGE,
        "cannot read",
        id="config-missing",
    ),
    pytest.param(
        lambda s: [*BASE, "--config", str(s.tmp_path)], ExitCode.USAGE, "cannot read", id="config-unreadable"
    ),
    pytest.param(
        lambda s: [*BASE, "--config", s.file("bad.toml", "hosts = \n")],
        ExitCode.USAGE,
        "invalid TOML",
        id="config-invalid-toml",
    ),
    pytest.param(
        lambda s: ["--hosts", s.silent_hosts, "--path", "/e", "--connect-timeout", "1", "--", "true"],
        ExitCode.ZK_UNREACHABLE,
        "",
        id="zookeeper-unreachable",
    ),
]


@pytest.fixture
def silent_hosts() -> Iterator[str]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def assert_one_line_error(stderr: str, stdout: str, message: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("election-daemon: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in stderr + stdout


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("make_args", "code", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_an_exit_code(
    make_args: Callable[[Scene], list[str]], code: ExitCode, message: str, tmp_path: Path, silent_hosts: str
) -> None:
    started_s = time.monotonic()
    result = run_daemon(make_args(Scene(tmp_path, silent_hosts)))
    elapsed_s = time.monotonic() - started_s
    assert result.returncode == code, result.stderr
    assert_one_line_error(result.stderr, result.stdout, message)
    if code is ExitCode.ZK_UNREACHABLE:
        assert elapsed_s < 1 + 2 * SLACK_S, f"gave up after {elapsed_s:.2f} s, not about 1 s"


@pytest.mark.timeout(90)
def test_session_timeout_the_server_refuses(tmp_path: Path) -> None:
    """Refused before our node enters the queue: never elected, no command, no hook."""
    ran, hooked = tmp_path / "ran", tmp_path / "hooked"
    with ZooKeeperEnsemble(1, max_session_timeout_ms=4000) as server:
        result = run_daemon(
            [
                "--hosts",
                server.hosts,
                "--path",
                "/e",
                "--session-timeout",
                "10",
                "--on-elected",
                f"touch {shlex.quote(str(hooked))}",
                "--",
                "touch",
                str(ran),
            ]
        )
        zk = KazooClient(hosts=server.hosts)
        zk.start(timeout=10)
        try:
            assert not zk.exists("/e") or zk.get_children("/e") == []
        finally:
            zk.stop()
            zk.close()
    assert result.returncode == ExitCode.ZK_REFUSED, result.stderr
    assert_one_line_error(result.stderr, result.stdout, "--session-timeout")
    assert "negotiated a session timeout of 4 s, not 10 s" in result.stderr
    events = [json.loads(line)["event"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert "joined" not in events and "elected" not in events, events
    assert not ran.exists() and not hooked.exists()


@pytest.mark.timeout(30)
def test_help_lists_the_exit_codes() -> None:
    result = run_daemon(["--help"])
    assert result.returncode == ExitCode.OK
    assert "exit codes:" in result.stdout
    for code in ExitCode:
        assert re.search(rf"^\s+{code.value}\s+{code.name}\s", result.stdout, re.MULTILINE), code.name
    assert not result.stderr
