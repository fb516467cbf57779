"""The one option layer: the exception-to-exit-code mapping and the shared option table."""

from __future__ import annotations

import pytest

from election_daemon.cli.observe import ObserveOptions, observer_command
from election_daemon.cli.options import OperationError, exit_code_for, guarded, load
from election_daemon.cli.run import DAEMON, build_daemon_parser
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import (
    ChildError,
    ConfigError,
    ConnectTimeoutError,
    InternalError,
    NoAuthError,
    SessionLostError,
)

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (ConfigError("--path", "bad"), ExitCode.USAGE, "election-daemon: error: --path: bad\n"),
        (ConnectTimeoutError("no server"), ExitCode.ZK_UNREACHABLE, "election-daemon: error: no server\n"),
        (NoAuthError("/p"), ExitCode.ZK_REFUSED, "election-daemon: error: ZooKeeper refused: /p\n"),
        (SessionLostError("gone"), ExitCode.ZK_REFUSED, "election-daemon: error: ZooKeeper refused: gone\n"),
        (ChildError("no such file"), ExitCode.COMMAND_FAILED, "election-daemon: error: no such file\n"),
        (OperationError("nobody leads"), ExitCode.OPERATION_FAILED, "election-daemon: error: nobody leads\n"),
        (InternalError("gave up"), ExitCode.ELECTION_FAILED, "election-daemon: error: gave up\n"),
        (KeyboardInterrupt(), ExitCode.OK, ""),
        (SystemExit(0), ExitCode.OK, ""),
    ],
)
def test_each_exception_has_one_exit_code_and_one_line(
    exc: BaseException, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def body() -> int:
        raise exc

    assert guarded(body) == code
    assert capsys.readouterr().err == line


def test_a_bug_is_exit_code_1_with_the_traceback_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    recorded: list[BaseException] = []

    def on_bug(exc: BaseException) -> str:
        recorded.append(exc)
        return "see the log"

    try:
        raise RuntimeError("oops")
    except RuntimeError as exc:
        assert exit_code_for(exc, on_bug=on_bug) == ExitCode.FAILURE
    assert isinstance(recorded[0], RuntimeError)
    assert capsys.readouterr().err == (
        "election-daemon: error: internal error: RuntimeError: oops (a bug; see the log)\n"
    )


def test_guarded_returns_the_body_s_code() -> None:
    assert guarded(lambda: ExitCode.VERIFY_FAILED) == ExitCode.VERIFY_FAILED


COMMAND = observer_command("status", "", ["json"])


def test_observers_take_flags_over_the_environment() -> None:
    environ = {
        "ELECTION_DAEMON_HOSTS": "env:1",
        "ELECTION_DAEMON_PATH": "/p",
        "ELECTION_DAEMON_SESSION_TIMEOUT": "4",
    }
    options = ObserveOptions.from_settings(load(COMMAND, ["--hosts", "flag:2"], environ))
    assert options == ObserveOptions("flag:2", "/p", 4.0, 30.0)


def test_observers_ignore_the_daemon_s_other_variables() -> None:
    environ = {"ELECTION_DAEMON_HOSTS": "zk", "ELECTION_DAEMON_PATH": "/p", "ELECTION_DAEMON_COMMAND": "x"}
    assert ObserveOptions.from_settings(load(COMMAND, [], environ)).hosts == "zk"


@pytest.mark.parametrize(
    ("argv", "environ", "field", "fragment"),
    [
        (["--session-timeout", "1_0"], {}, "--session-timeout", "must be a number of seconds, got '1_0'"),
        (
            [],
            {"ELECTION_DAEMON_CONNECT_TIMEOUT": "0"},
            "--connect-timeout",
            "(from ELECTION_DAEMON_CONNECT_TIMEOUT)",
        ),
        (["--bogus"], {}, "command line", "unrecognized arguments: --bogus"),
    ],
)
def test_observer_errors_name_the_flag_and_the_source(
    argv: list[str], environ: dict[str, str], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        ObserveOptions.from_settings(load(COMMAND, ["--hosts", "zk", "--path", "/p", *argv], environ))
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_verify_reads_no_environment() -> None:
    from election_daemon.cli.verify._options import parse_options

    assert parse_options(["--quick"]).hosts is None


def test_the_daemon_s_run_mode_options_are_rows_of_the_one_table() -> None:
    for name in ("child-output", "on-change", "try", "once"):
        assert name in DAEMON.options
    help_text = build_daemon_parser().format_help()
    for text in (
        "--child-output inherit|stderr|log",
        "--on-change CMD",
        "--try SECONDS",
        "--once",
        "ELECTION_DAEMON_CHILD_OUTPUT",
        "ELECTION_DAEMON_TRY",
        "11  NOT_ELECTED",
    ):
        assert text in help_text, text


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["--try", "2.5"], {}, {"try_s": 2.5}),
        ([], {"ELECTION_DAEMON_TRY": "7"}, {"try_s": 7.0}),
        (["--once"], {}, {"once": True}),
        (["--no-once"], {"ELECTION_DAEMON_ONCE": "1"}, {"once": False}),
        (["--child-output", "log"], {"ELECTION_DAEMON_CHILD_OUTPUT": "stderr"}, {"child_output": "log"}),
        ([], {"ELECTION_DAEMON_ON_CHANGE": "notify.sh"}, {"on_change": "notify.sh"}),
    ],
)
def test_run_mode_options_from_flags_and_environment(
    argv: list[str], environ: dict[str, str], expected: dict[str, object]
) -> None:
    values = load(DAEMON, ["--hosts", "zk", "--path", "/p", *argv], environ).values()
    assert {key: values[key] for key in expected} == expected
