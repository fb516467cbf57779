"""Real daemons on a real ZooKeeper: clean JSON stdout whatever the command prints
(``--child-output``), hooks and their order (``--on-change``, a revocation's hooks after the
command's group is gone), ``--try`` and ``--once``."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _daemons import DaemonProcess, Daemons, wait_until
from kazoo.client import KazooClient

from election_daemon.daemon.exitcodes import ExitCode

pytestmark = pytest.mark.timeout(20)

SLACK_S = 1.5
"""Added to latency bounds: a loaded 2-core machine runs other test suites at the same time."""

# A leader-only command that prints a forged event, plain text and a stderr line, then waits.
FORGER = (
    "import sys, time\n"
    'print(\'{"event": "elected", "id": "someone-else"}\', flush=True)\n'
    "print('plain text, not JSON', flush=True)\n"
    "sys.stderr.write('to stderr\\n'); sys.stderr.flush()\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    with Daemons() as started:
        yield started
        # Captured output: pytest shows it only if the test failed.
        print(started.describe())


def all_json(daemon: DaemonProcess) -> None:
    for line in daemon.lines:
        assert isinstance(json.loads(line), dict), line


# -- the command's output ----------------------------------------------------------------------


def test_by_default_stdout_is_json_lines_whatever_the_command_prints(
    daemons: Daemons, zk_hosts: str, zk_path: str
) -> None:
    daemon = daemons.start(zk_hosts, zk_path, identity="me", command=[sys.executable, "-c", FORGER])
    elected = daemon.wait_for("elected")
    daemon.wait_for("child_output", lambda e: e["stream"] == "stderr")
    daemon.wait_for("child_output", lambda e: e["line"] == "plain text, not JSON")
    daemon.terminate()
    assert daemon.wait() == ExitCode.OK

    all_json(daemon)
    # The forged line is data inside a child_output event, never an event of its own.
    assert [e["id"] for e in daemon.events("elected")] == ["me"]
    output = [(e["stream"], e["line"], e["token"]) for e in daemon.events("child_output")]
    token = elected["token"]
    assert sorted(output) == sorted(
        [
            ("stdout", '{"event": "elected", "id": "someone-else"}', token),
            ("stdout", "plain text, not JSON", token),
            ("stderr", "to stderr", token),
        ]
    )
    assert "to stderr" not in daemon.stderr


def test_child_output_stderr_keeps_stdout_for_the_log(daemons: Daemons, zk_hosts: str, zk_path: str) -> None:
    daemon = daemons.start(
        zk_hosts, zk_path, options=["--child-output", "stderr"], command=[sys.executable, "-c", FORGER]
    )
    daemon.wait_for("elected")
    wait_until(lambda: "to stderr" in daemon.stderr, timeout_s=10, what="the command's stderr")
    wait_until(lambda: "plain text, not JSON" in daemon.stderr, timeout_s=10, what="the command's stdout")
    daemon.terminate()
    assert daemon.wait() == ExitCode.OK
    all_json(daemon)
    assert not daemon.events("child_output")
    assert '{"event": "elected", "id": "someone-else"}' in daemon.stderr


# -- hooks ---------------------------------------------------------------------------------------


def test_hooks_see_the_transition_and_revoked_runs_after_the_group_is_gone(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    pgid_file, verdict, journal = tmp_path / "pgid", tmp_path / "verdict", tmp_path / "journal"
    # Takes a while to stop (a server draining), with a grandchild in its group.
    command = [
        "sh",
        "-c",
        f'echo $$ > {shlex.quote(str(pgid_file))}; trap "sleep 0.7; exit 0" TERM; '
        "sleep 600 & sleep 600 & wait",
    ]
    # Not kill -0: zombies count for it, and this machine's PID 1 may never reap the orphans.
    check_group = (
        shlex.join(
            [
                sys.executable,
                "-c",
                "import sys; from election_daemon.testing import process_group_alive as alive; "
                "print('alive' if alive(int(open(sys.argv[1]).read())) else 'gone')",
                str(pgid_file),
            ]
        )
        + f" > {shlex.quote(str(verdict))}"
    )
    daemon = daemons.start(
        zk_hosts,
        zk_path,
        identity="hooked",
        options=[
            "--on-revoked",
            check_group,
            "--on-change",
            'echo "$ELECTION_EVENT $ELECTION_STATE $ELECTION_REASON|$ELECTION_TOKEN|'
            f'$ELECTION_PREVIOUS_LEADER" >> {shlex.quote(str(journal))}',
            "--kill-grace",
            "1.5",
        ],
        command=command,
    )
    elected = daemon.wait_for("elected")
    wait_until(pgid_file.exists, timeout_s=10, what="the command to start")
    daemon.wait_for("hook_finished", lambda e: e["name"] == "change" and e["token"] == elected["token"])
    daemon.terminate()
    assert daemon.wait() == ExitCode.OK

    assert verdict.read_text() == "gone\n", "the revoked hook ran while the command's group was alive"
    names = [(e.name, e.get("name")) for e in daemon.events()]
    stopped = names.index(("child_stopped", None))
    assert names.index(("hook_started", "revoked")) > stopped
    assert names.index(("hook_started", "change"), names.index(("hook_started", "revoked"))) > stopped
    lines = journal.read_text().splitlines()
    token = str(elected["token"])
    assert f"elected leading |{token}|" in lines
    assert f"revoked stopped stopped|{token}|" in lines
    assert lines.index(f"elected leading |{token}|") < lines.index(f"revoked stopped stopped|{token}|")
    assert lines[0].startswith("starting joining"), lines
    assert lines[-1].startswith("stopped stopped"), lines


# -- --try and --once ----------------------------------------------------------------------------


def test_try_gives_up_without_running_the_command(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    leader = daemons.start(zk_hosts, zk_path, identity="leader")
    leader.wait_for("elected")
    ran = tmp_path / "ran"
    started = time.monotonic()
    late = daemons.start(
        zk_hosts, zk_path, identity="late", options=["--try", "1"], command=["touch", str(ran)]
    )
    assert late.wait(timeout_s=10) == ExitCode.NOT_ELECTED
    assert 1.0 <= time.monotonic() - started < 1.0 + 3 * SLACK_S
    assert not ran.exists()
    assert not late.events("child_started")
    assert late.wait_for("not_elected")["reason"] == "not elected within 1 s (--try): the command did not run"
    assert late.stderr == "election-daemon: error: not elected within 1 s (--try): the command did not run\n"
    assert leader.returncode is None


def test_try_elected_in_time_goes_on_as_usual(daemons: Daemons, zk_hosts: str, zk_path: str) -> None:
    daemon = daemons.start(zk_hosts, zk_path, options=["--try", "2"], command=["sleep", "600"])
    daemon.wait_for("child_started")
    time_limit = daemon.started_s + 2 + SLACK_S
    wait_until(lambda: time.monotonic() > time_limit, timeout_s=10, what="--try's deadline to pass")
    assert daemon.returncode is None and not daemon.events("not_elected")
    daemon.terminate()
    assert daemon.wait() == ExitCode.OK


def test_once_runs_the_command_once_then_resigns_with_its_status(
    daemons: Daemons, zk_hosts: str, zk_path: str, tmp_path: Path, kazoo: KazooClient
) -> None:
    runs = tmp_path / "runs"
    daemon = daemons.start(
        zk_hosts,
        zk_path,
        options=["--once"],
        command=["sh", "-c", f'echo "$ELECTION_TOKEN" >> {shlex.quote(str(runs))}; exit 3'],
    )
    assert daemon.wait(timeout_s=15) == 3
    elected = daemon.wait_for("elected")
    assert runs.read_text() == f"{elected['token']}\n"
    assert [e.name for e in daemon.events("child_started")] == ["child_started"]
    assert kazoo.exists(elected["node"]) is None, "the daemon resigned: its node is gone"


def test_once_exits_6_when_leadership_ends_before_the_command(
    daemons: Daemons, zk_hosts: str, zk_path: str, kazoo: KazooClient
) -> None:
    daemon = daemons.start(zk_hosts, zk_path, options=["--once"], command=["sleep", "600"])
    elected = daemon.wait_for("elected")
    started = daemon.wait_for("child_started")
    kazoo.delete(elected["node"])  # an operator deletes the leader's node
    assert daemon.wait(timeout_s=10) == ExitCode.LEADERSHIP_LOST
    assert daemon.wait_for("child_stopped")["pid"] == started["pid"]
    assert len(daemon.events("child_started")) == 1
