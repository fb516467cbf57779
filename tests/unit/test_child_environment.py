"""What the command and hooks inherit (--clear-env), and spawning when out of file descriptors."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _processes import SOON_S
from structlog.testing import LogCapture

from election_daemon.daemon import supervisor as supervisor_module
from election_daemon.daemon.config import child_base_environment
from election_daemon.daemon.hooks import HookRunner, run_hook
from election_daemon.daemon.supervisor import ChildResourceError, ChildSupervisor, process_group_alive
from election_daemon.errors import ChildError

pytestmark = pytest.mark.timeout(60)

DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


def read_env(path: Path) -> dict[str, str]:
    import json

    env: dict[str, str] = json.loads(path.read_text())
    return env


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("DATABASE_URL", "postgres://db")
    monkeypatch.setenv("LC_TIME", "C")


async def test_the_command_inherits_everything_by_default(
    tmp_path: Path, log: Any, groups: list[int], secret: None
) -> None:
    out = tmp_path / "env.json"
    supervisor = ChildSupervisor([sys.executable, "-c", DUMP_ENV, str(out)], kill_grace_s=1, log=log)
    groups.append(await supervisor.start({"ELECTION_TOKEN": "5"}))
    await asyncio.wait_for(supervisor.wait(), SOON_S)
    env = read_env(out)
    assert env["AWS_SECRET_ACCESS_KEY"] == "hunter2"
    assert env["ELECTION_TOKEN"] == "5"


async def test_with_a_cleared_environment_the_command_gets_essentials_and_named_variables(
    tmp_path: Path, log: Any, groups: list[int], secret: None
) -> None:
    out = tmp_path / "env.json"
    base = child_base_environment(os.environ, ["DATABASE_URL"])
    supervisor = ChildSupervisor(
        [sys.executable, "-c", DUMP_ENV, str(out)], kill_grace_s=1, log=log, environment=base
    )
    groups.append(await supervisor.start({"ELECTION_TOKEN": "5", "ELECTION_ID": "a"}))
    await asyncio.wait_for(supervisor.wait(), SOON_S)
    env = read_env(out)
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["DATABASE_URL"] == "postgres://db"
    assert env["LC_TIME"] == "C"
    assert env["PATH"] == os.environ["PATH"]
    assert (env["ELECTION_TOKEN"], env["ELECTION_ID"]) == ("5", "a")
    # Python itself may add a few (LC_CTYPE coercion); nothing of the daemon's secrets.
    assert set(env) - {"LC_CTYPE"} <= {*base, "ELECTION_TOKEN", "ELECTION_ID"}


async def test_hooks_get_the_same_cleared_environment(log: Any, secret: None) -> None:
    base = child_base_environment(os.environ, ["DATABASE_URL"])
    result = await run_hook(
        'echo "${AWS_SECRET_ACCESS_KEY:-none} $DATABASE_URL $ELECTION_TOKEN"',
        env={"ELECTION_TOKEN": "9"},
        timeout_s=SOON_S,
        log=log,
        name="elected",
        environment=base,
    )
    assert result.stdout == "none postgres://db 9\n"
    runner = HookRunner(timeout_s=SOON_S, log=log, environment=base)
    runner.submit("elected", 'echo "${AWS_SECRET_ACCESS_KEY:-none}" >&2; exit 4', {})
    await runner.close()


# -- out of file descriptors -------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM])
async def test_a_spawn_out_of_resources_is_a_resource_error(
    log: Any, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    supervisor = ChildSupervisor(["true"], kill_grace_s=1, log=log)

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(subprocess, "Popen", fail)
    with pytest.raises(ChildResourceError) as caught:
        await supervisor.start({})
    assert isinstance(caught.value, ChildError)
    assert "out of resources" in str(caught.value)
    assert "not executable" not in str(caught.value)


async def test_a_real_emfile_is_a_resource_error(log: Any) -> None:
    supervisor = ChildSupervisor(["true"], kill_grace_s=1, log=log)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hogs: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        with pytest.raises(ChildResourceError):
            while True:
                try:
                    hogs.append(os.open("/dev/null", os.O_RDONLY))
                except OSError:
                    break
            await supervisor.start({})
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_hook_out_of_descriptors_is_logged_not_raised(log: Any, capture: LogCapture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hogs: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        while True:
            try:
                hogs.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        result = await run_hook("true", env={}, timeout_s=SOON_S, log=log, name="elected")
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert result.exit_status is None
    (finished,) = [e for e in capture.entries if e["event"] == "hook_finished"]
    assert "Too many open files" in finished["reason"]


def test_a_group_is_never_declared_gone_when_proc_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:

        def emfile() -> Any:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        monkeypatch.setattr(supervisor_module, "_process_groups_and_states", emfile)
        assert process_group_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not process_group_alive(child.pid)
