"""Tests for the daemon configuration: precedence, validation, environment and TOML errors, exit codes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from election_daemon.cli.run import build_daemon_parser, load_daemon_config
from election_daemon.daemon.config import (
    MAX_DATA_BYTES,
    ChildExitPolicy,
    ChildOutput,
    DaemonConfig,
    LogFormat,
)
from election_daemon.daemon.exitcodes import ExitCode, render_exit_codes
from election_daemon.errors import ConfigError
from election_daemon.library.limits import format_servers, parse_hosts, validate_election_path

pytestmark = pytest.mark.timeout(10)

REQUIRED = ["--hosts", "zk:2181", "--path", "/svc/leader"]


def load(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> DaemonConfig:
    return load_daemon_config([*REQUIRED, *(argv or [])], environ or {})


def make(**overrides: Any) -> DaemonConfig:
    return DaemonConfig(**{"hosts": "zk:2181", "path": "/svc/leader", **overrides})


# The values the command line parses from text before DaemonConfig holds them.
_TEXT_FLAGS = {"data_json": "--data", "http": "--http"}


def make_or_load(**overrides: Any) -> DaemonConfig:
    """DaemonConfig from values, or from the flag's text for what the command line parses."""
    flags = [
        word for key, text in overrides.items() if key in _TEXT_FLAGS for word in (_TEXT_FLAGS[key], text)
    ]
    values = {key: value for key, value in overrides.items() if key not in _TEXT_FLAGS}
    return load(flags) if flags else make(**values)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "daemon.toml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_line(exc: ConfigError) -> None:
    assert "\n" not in str(exc)
    assert len(str(exc)) < 300


# ---------------------------------------------------------------------------------------------
# Defaults and precedence


def test_defaults() -> None:
    config = load()
    assert config.servers == (("zk", 2181),)
    assert config.chroot is None
    assert config.path == "/svc/leader"
    assert config.command == ()
    assert config.session_timeout_s == 10.0
    assert config.connect_timeout_s == 30.0
    assert config.identity == f"{socket.gethostname()}:{os.getpid()}"
    assert config.data is None
    assert config.data_bytes is None
    assert config.kill_grace_s == pytest.approx(10.0 / 6)
    assert config.on_child_exit is ChildExitPolicy.EXIT
    assert config.exit_on_loss is False
    assert config.log_format is None
    assert config.on_elected is None
    assert config.on_revoked is None
    assert config.hook_timeout_s == 10.0
    assert config.http_address is None
    assert config.priority == 0
    assert config.warnings == ()


class Precedence(NamedTuple):
    """One option given at every level: ``values`` are the expected file, env and flag results."""

    flag: str
    toml_line: str
    env_text: str
    flag_text: str
    attribute: str
    default: object
    values: tuple[object, object, object]


PRECEDENCE = [
    Precedence(
        "--session-timeout", "session-timeout = 20", "30", "40", "session_timeout_s", 10.0, (20.0, 30.0, 40.0)
    ),
    Precedence(
        "--connect-timeout", "connect_timeout = 5", "6.5", "7", "connect_timeout_s", 30.0, (5.0, 6.5, 7.0)
    ),
    Precedence(
        "--id",
        'id = "file"',
        "env",
        "flag",
        "identity",
        f"{socket.gethostname()}:{os.getpid()}",
        ("file", "env", "flag"),
    ),
    Precedence("--kill-grace", "kill_grace = 1.0", "1.5", "0.5", "kill_grace_s", 10.0 / 6, (1.0, 1.5, 0.5)),
    Precedence(
        "--on-child-exit",
        'on-child-exit = "rejoin"',
        "exit",
        "rejoin",
        "on_child_exit",
        ChildExitPolicy.EXIT,
        (ChildExitPolicy.REJOIN, ChildExitPolicy.EXIT, ChildExitPolicy.REJOIN),
    ),
    Precedence(
        "--log-format",
        'log_format = "console"',
        "json",
        "console",
        "log_format",
        None,
        (LogFormat.CONSOLE, LogFormat.JSON, LogFormat.CONSOLE),
    ),
    Precedence("--on-elected", 'on-elected = "f"', "e", "c", "on_elected", None, ("f", "e", "c")),
    Precedence("--on-change", 'on-change = "f"', "e", "c", "on_change", None, ("f", "e", "c")),
    Precedence(
        "--child-output",
        'child-output = "stderr"',
        "log",
        "inherit",
        "child_output",
        None,
        (ChildOutput.STDERR, ChildOutput.LOG, ChildOutput.INHERIT),
    ),
    Precedence("--try", "try = 5", "2.5", "0.25", "try_s", None, (5.0, 2.5, 0.25)),
    Precedence("--priority", "priority = 1", "2", "3", "priority", 0, (1, 2, 3)),
    Precedence(
        "--http",
        'http = "127.0.0.1:1"',
        "[::1]:2",
        "localhost:0",
        "http_address",
        None,
        (("127.0.0.1", 1), ("::1", 2), ("localhost", 0)),
    ),
]


@pytest.mark.parametrize("case", PRECEDENCE, ids=[case.flag for case in PRECEDENCE])
def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path, case: Precedence) -> None:
    from_file, from_env, from_flag = case.values
    env_name = "ELECTION_DAEMON_" + case.flag.removeprefix("--").upper().replace("-", "_")
    environ = {env_name: case.env_text}
    with_file = ["--config", str(write_toml(tmp_path, case.toml_line + "\n"))]
    assert getattr(load(), case.attribute) == case.default
    assert getattr(load(with_file), case.attribute) == from_file
    assert getattr(load(with_file, environ), case.attribute) == from_env
    assert getattr(load([*with_file, case.flag, case.flag_text], environ), case.attribute) == from_flag


def test_exit_on_loss_precedence_and_negation(tmp_path: Path) -> None:
    config_file = write_toml(tmp_path, "exit-on-loss = true\n")
    with_file = ["--config", str(config_file)]
    assert load(with_file).exit_on_loss is True
    assert load(with_file, {"ELECTION_DAEMON_EXIT_ON_LOSS": "no"}).exit_on_loss is False
    assert load([*with_file, "--exit-on-loss"], {"ELECTION_DAEMON_EXIT_ON_LOSS": "no"}).exit_on_loss is True
    assert load([*with_file, "--no-exit-on-loss"]).exit_on_loss is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("false", False), ("No", False)],
)
def test_environment_booleans(text: str, expected: bool) -> None:
    assert load(environ={"ELECTION_DAEMON_EXIT_ON_LOSS": text}).exit_on_loss is expected


def test_hosts_and_path_from_environment_and_file(tmp_path: Path) -> None:
    config_file = write_toml(tmp_path, 'hosts = "file:1"\npath = "/from/file"\n')
    environ = {"ELECTION_DAEMON_CONFIG": str(config_file), "ELECTION_DAEMON_HOSTS": "env:2"}
    config = load_daemon_config([], environ)
    assert config.servers == (("env", 2),)
    assert config.path == "/from/file"


def test_config_flag_beats_config_variable(tmp_path: Path) -> None:
    chosen = write_toml(tmp_path, "priority = 7\n")
    environ = {"ELECTION_DAEMON_CONFIG": str(tmp_path / "missing.toml")}
    assert load(["--config", str(chosen)], environ).priority == 7


def test_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    config_file = write_toml(tmp_path, 'on-elected = "notify"\n')
    environ = {"ELECTION_DAEMON_ON_ELECTED": "", "ELECTION_DAEMON_CONFIG": ""}
    assert load(environ=environ).on_elected is None
    assert load(["--config", str(config_file)], environ).on_elected == "notify"


def test_unrelated_variables_are_ignored() -> None:
    config = load(environ={"PATH": "/bin", "ELECTION_ID": "x", "ELECTION_DAEMONIC": "1"})
    assert config.priority == 0


def test_every_option_from_file(tmp_path: Path) -> None:
    config_file = write_toml(
        tmp_path,
        """
        hosts = "a:1,b:2/chroot"
        path = "/p"
        session_timeout = 6
        connect-timeout = 3
        id = "me"
        data = '{"role": "primary"}'
        kill-grace = 1
        on-child-exit = "rejoin"
        exit_on_loss = true
        log-format = "json"
        on-elected = "echo up"
        on_revoked = "echo down"
        on-change = "echo changed"
        child-output = "stderr"
        once = false
        try = 9
        hook-timeout = 2.5
        http = "0.0.0.0:9100"
        priority = -5
        command = ["sleep", "1000"]
        """,
    )
    config = load_daemon_config(["--config", str(config_file)], {})
    assert config.servers == (("a", 1), ("b", 2))
    assert config.chroot == "/chroot"
    assert config.path == "/p"
    assert config.session_timeout_s == 6.0
    assert config.connect_timeout_s == 3.0
    assert config.identity == "me"
    assert config.data == {"role": "primary"}
    assert config.kill_grace_s == 1.0
    assert config.on_child_exit is ChildExitPolicy.REJOIN
    assert config.exit_on_loss is True
    assert config.log_format is LogFormat.JSON
    assert config.on_elected == "echo up"
    assert config.on_revoked == "echo down"
    assert config.on_change == "echo changed"
    assert config.child_output is ChildOutput.STDERR
    assert config.once is False  # true would contradict on-child-exit = "rejoin"
    assert config.try_s == 9.0
    assert config.hook_timeout_s == 2.5
    assert config.http_address == ("0.0.0.0", 9100)
    assert config.priority == -5
    assert config.command == ("sleep", "1000")


# ---------------------------------------------------------------------------------------------
# The command


def test_everything_after_double_dash_is_the_command() -> None:
    config = load(["--", "sh", "-c", "exit 3", "--hosts", "x", "--", "--help"])
    assert config.command == ("sh", "-c", "exit 3", "--hosts", "x", "--", "--help")
    assert config.servers == (("zk", 2181),)


def test_command_from_environment_is_shell_words() -> None:
    config = load(environ={"ELECTION_DAEMON_COMMAND": "sh -c 'echo \"hi there\"'"})
    assert config.command == ("sh", "-c", 'echo "hi there"')


def test_command_precedence(tmp_path: Path) -> None:
    config_file = write_toml(tmp_path, 'command = ["from", "file"]\n')
    with_file = ["--config", str(config_file)]
    environ = {"ELECTION_DAEMON_COMMAND": "from env"}
    assert load(with_file).command == ("from", "file")
    assert load(with_file, environ).command == ("from", "env")
    assert load([*with_file, "--", "from", "flags"], environ).command == ("from", "flags")
    # A bare "--" gives no command, so it does not hide the others.
    assert load([*with_file, "--"], environ).command == ("from", "env")


# ---------------------------------------------------------------------------------------------
# Command-line errors, --help and --version


@pytest.mark.parametrize(
    ("argv", "field", "fragment"),
    [
        (["--hosts"], "--hosts", "expected one argument"),
        (["--sesion-timeout", "3"], "--sesion-timeout", "did you mean --session-timeout?"),
        (["--bogus=1"], "--bogus", "unknown option"),
        (["--session"], "--session", "unknown option"),
        (["sleep", "1"], "command", "'sleep'; put the command after '--'"),
        (["--exit-on-loss=yes"], "--exit-on-loss", "'yes'"),
        (["--session-timeout", "ten"], "--session-timeout", "must be a number of seconds, got 'ten'"),
        (["--priority", "1.5"], "--priority", "must be an integer, got '1.5'"),
        (["--session-timeout", "0"], "--session-timeout", "got 0.0"),
    ],
)
def test_command_line_errors_raise_config_error(argv: list[str], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(argv)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert_one_line(caught.value)


@pytest.mark.parametrize(("argv", "field"), [(["--path", "/p"], "--hosts"), (["--hosts", "zk"], "--path")])
def test_hosts_and_path_are_required(argv: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_daemon_config(argv, {})
    assert caught.value.field == field
    assert caught.value.message.startswith("is required")


def test_help_prints_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        load_daemon_config(["--help"], {})
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: election-daemon [OPTIONS] [-- COMMAND [ARGS...]]")
    assert "--session-timeout SECONDS" in out
    assert "ELECTION_DAEMON_SESSION_TIMEOUT" in out
    assert "exit codes:" in out


def test_version_prints_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        load_daemon_config(["--version"], {})
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("election-daemon ")


def test_parser_reused_directly_raises_instead_of_exiting() -> None:
    with pytest.raises(ConfigError) as caught:
        build_daemon_parser().parse_args(["--bogus"])
    assert caught.value.field == "command line"
    assert caught.value.message == "unrecognized arguments: --bogus"


def test_help_after_double_dash_belongs_to_the_command() -> None:
    assert load(["--", "tool", "--help"]).command == ("tool", "--help")


# ---------------------------------------------------------------------------------------------
# Validation at construction


@pytest.mark.parametrize(
    ("hosts", "servers", "chroot"),
    [
        ("zk", (("zk", 2181),), None),
        ("zk1:2181,zk2:2182", (("zk1", 2181), ("zk2", 2182)), None),
        ("[::1]:2181", (("::1", 2181),), None),
        ("[::1]", (("::1", 2181),), None),
        ("[fe80::1%eth0]:2281,zoo_1:2181", (("fe80::1%eth0", 2281), ("zoo_1", 2181)), None),
        (
            "10.0.0.1:2181,zk.example.com.:2181/apps/billing",
            (("10.0.0.1", 2181), ("zk.example.com.", 2181)),
            "/apps/billing",
        ),
        ("[2001:db8::7]:65535/x", (("2001:db8::7", 65535),), "/x"),
    ],
)
def test_hosts_are_parsed(hosts: str, servers: tuple[tuple[str, int], ...], chroot: str | None) -> None:
    config = make(hosts=hosts)
    assert config.servers == servers
    assert config.chroot == chroot
    assert config.hosts == hosts


def test_library_helpers_name_the_library_field() -> None:
    assert parse_hosts("[::1],zk:2182/app") == ((("::1", 2181), ("zk", 2182)), "/app")
    assert validate_election_path("/svc/leader") == "/svc/leader"
    with pytest.raises(ConfigError) as caught:
        parse_hosts("zk:0")
    assert caught.value.field == "hosts"
    with pytest.raises(ConfigError) as caught:
        validate_election_path("svc")
    assert caught.value.field == "path"
    with pytest.raises(ConfigError, match="must be a string, got None"):
        validate_election_path(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be a string, got b'zk'"):
        parse_hosts(b"zk")  # type: ignore[arg-type]


def test_format_servers_gives_aiozk_an_explicit_list() -> None:
    servers, _ = parse_hosts("[::1],zk,10.0.0.1:2182/chroot")
    assert format_servers(servers) == "[::1]:2181,zk:2181,10.0.0.1:2182"


@pytest.mark.parametrize("path", ["/a", "/zookeeperx/y", "/services/billing/leader", "/é/ü", "/a" * 300])
def test_valid_paths(path: str) -> None:
    assert make(path=path).path == path


BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"hosts": ""}, "--hosts", "must list at least one host:port, got ''"),
    ({"hosts": "/chroot"}, "--hosts", "at least one"),
    ({"hosts": "a:1,,b:2"}, "--hosts", "empty entry, got 'a:1,,b:2'"),
    ({"hosts": "a:1,"}, "--hosts", "empty entry"),
    ({"hosts": ":2181"}, "--hosts", "empty host"),
    ({"hosts": "a:0"}, "--hosts", "port must be 1..65535, got '0'"),
    ({"hosts": "a:65536"}, "--hosts", "got '65536'"),
    ({"hosts": "a:"}, "--hosts", "got ''"),
    ({"hosts": "a:x"}, "--hosts", "got 'x'"),
    ({"hosts": "a:+1"}, "--hosts", "got '+1'"),
    ({"hosts": "::1:2181"}, "--hosts", "needs brackets"),
    ({"hosts": "[::1"}, "--hosts", "malformed bracketed address '[::1'"),
    ({"hosts": "[::1]x"}, "--hosts", "malformed"),
    ({"hosts": "[zz::1]:2181"}, "--hosts", "invalid IPv6 address 'zz::1'"),
    ({"hosts": "[10.0.0.1]:2181"}, "--hosts", "invalid IPv6"),
    ({"hosts": "bad!host:2181"}, "--hosts", "invalid host name 'bad!host'"),
    ({"hosts": "-lead.example:1"}, "--hosts", "invalid host name"),
    ({"hosts": "a..b:1"}, "--hosts", "invalid host name"),
    ({"hosts": "x" * 64 + ":1"}, "--hosts", "invalid host name"),
    ({"hosts": "999.1.1.1:2181"}, "--hosts", "invalid IPv4 address '999.1.1.1'"),
    ({"hosts": "a:1,b:2,a:1"}, "--hosts", "lists 'a:1' twice"),
    ({"hosts": "a:1/"}, "--hosts", "chroot must not be the root, got '/'"),
    ({"hosts": "a:1/app/"}, "--hosts", "chroot must not end with '/'"),
    ({"hosts": "a:1/app//x"}, "--hosts", "chroot must not contain an empty segment"),
    ({"hosts": "a:1/zookeeper"}, "--hosts", "chroot must not be under /zookeeper"),
    ({"path": ""}, "--path", "must be absolute (start with '/'), got ''"),
    ({"path": "svc/leader"}, "--path", "must be absolute (start with '/'), got 'svc/leader'"),
    ({"path": "/"}, "--path", "must not be the root"),
    ({"path": "/svc/"}, "--path", "must not end with '/', got '/svc/'"),
    ({"path": "/svc//x"}, "--path", "must not contain an empty segment ('//')"),
    ({"path": "/svc/./x"}, "--path", "'.' or '..'"),
    ({"path": "/svc/.."}, "--path", "'.' or '..'"),
    ({"path": "/svc/\x00"}, "--path", "U+0000"),
    ({"path": "/svc/a\nb"}, "--path", "U+000A, got '/svc/a\\nb'"),
    ({"path": "/svc/\x7f"}, "--path", "U+007F"),
    ({"path": "/svc/\udcff"}, "--path", "U+DCFF"),
    ({"path": "/svc/\ufff0"}, "--path", "U+FFF0"),
    ({"path": "/zookeeper"}, "--path", "must not be under /zookeeper"),
    ({"path": "/zookeeper/quota/x"}, "--path", "must not be under /zookeeper"),
    ({"path": "/" + "a" * 1024}, "--path", "must be at most 1024 bytes, got '/aaaa"),
    ({"path": "/" + "é" * 512}, "--path", "at most 1024 bytes"),
    ({"session_timeout_s": 0.0}, "--session-timeout", "must be between 0.1 and 3600 seconds, got 0.0"),
    ({"session_timeout_s": -1.0}, "--session-timeout", "got -1.0"),
    ({"session_timeout_s": 3601.0}, "--session-timeout", "got 3601.0"),
    ({"session_timeout_s": float("nan")}, "--session-timeout", "got nan"),
    ({"session_timeout_s": float("inf")}, "--session-timeout", "got inf"),
    ({"session_timeout_s": True}, "--session-timeout", "must be a number of seconds, got True"),
    ({"session_timeout_s": "10"}, "--session-timeout", "must be a number of seconds, got '10'"),
    ({"connect_timeout_s": 0.0}, "--connect-timeout", "got 0.0"),
    ({"connect_timeout_s": 86401.0}, "--connect-timeout", "got 86401.0"),
    ({"kill_grace_override_s": -0.5}, "--kill-grace", "must be between 0.001 and 3600 seconds, got -0.5"),
    ({"hook_timeout_s": 0.0}, "--hook-timeout", "got 0.0"),
    ({"identity": ""}, "--id", "must not be empty"),
    ({"identity": "a\nb"}, "--id", "printable characters, got 'a\\nb'"),
    ({"identity": "a\x1b[31m"}, "--id", "printable"),
    ({"identity": "x" * 256}, "--id", "at most 255 bytes, got 256"),
    ({"identity": "é" * 128}, "--id", "got 256"),
    ({"data_json": "{"}, "--data", "must be valid JSON (Expecting property name"),
    ({"data_json": ""}, "--data", "got ''"),
    ({"data_json": "NaN"}, "--data", "NaN is not JSON"),
    ({"data_json": "[1, -Infinity]"}, "--data", "-Infinity is not JSON"),
    ({"data_json": '"\udcff"'}, "--data", "must be valid JSON"),
    ({"data_json": json.dumps("x" * MAX_DATA_BYTES)}, "--data", f"more than the limit of {MAX_DATA_BYTES}"),
    ({"on_child_exit": "restart"}, "--on-child-exit", "must be one of 'exit', 'rejoin', got 'restart'"),
    ({"log_format": "xml"}, "--log-format", "must be one of 'json', 'console', got 'xml'"),
    ({"on_elected": "  "}, "--on-elected", "must not be blank, got '  '"),
    ({"on_revoked": "a\0b"}, "--on-revoked", "must not contain NUL"),
    ({"on_change": ""}, "--on-change", "must not be blank"),
    (
        {"child_output": "journal"},
        "--child-output",
        "must be one of 'inherit', 'stderr', 'log', got 'journal'",
    ),
    ({"try_s": 0.0}, "--try", "must be between 0.001 and 604800 seconds, got 0.0"),
    ({"try_s": -3.0}, "--try", "got -3.0"),
    ({"try_s": float("inf")}, "--try", "got inf"),
    ({"once": True}, "--once", "needs a command to run: give it after '--'"),
    (
        {"once": True, "command": ("true",), "on_child_exit": "rejoin"},
        "--once",
        "not with --on-child-exit rejoin",
    ),
    ({"command": ("",)}, "command", "program name must not be empty"),
    ({"command": ("sh", "a\0")}, "command", "must not contain NUL, got 'a\\x00'"),
    ({"http": "localhost"}, "--http", "missing port in 'localhost'; expected HOST:PORT"),
    ({"http": ":8080"}, "--http", "empty host"),
    ({"http": "host:70000"}, "--http", "port must be 0..65535, got '70000'"),
    ({"http": "[::1]"}, "--http", "missing port"),
    ({"priority": 2**31}, "--priority", f"got {2**31}"),
    ({"priority": True}, "--priority", "got True"),
    ({"priority": 1.5}, "--priority", "got 1.5"),
]


@pytest.mark.parametrize(("overrides", "field", "fragment"), BAD_VALUES)
def test_invalid_values_name_the_field_and_value(
    overrides: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_or_load(**overrides)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert caught.value.message[0].islower()
    assert str(caught.value) == f"{field}: {caught.value.message}"
    assert_one_line(caught.value)


@pytest.mark.parametrize(
    ("argv", "environ", "field", "fragment"),
    [
        (["--try", "0"], {}, "--try", "must be between 0.001 and 604800 seconds, got 0.0"),
        (["--try", "soon"], {}, "--try", "must be a number of seconds, got 'soon'"),
        ([], {"ELECTION_DAEMON_TRY": "-1"}, "--try", "(from ELECTION_DAEMON_TRY)"),
        (["--once"], {}, "--once", "needs a command"),
        ([], {"ELECTION_DAEMON_ONCE": "yes"}, "--once", "needs a command"),
        (["--child-output", "file"], {}, "--child-output", "must be one of 'inherit', 'stderr', 'log'"),
    ],
)
def test_run_mode_errors_from_flags_and_environment(
    argv: list[str], environ: dict[str, str], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(argv, environ)
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_once_and_try_together() -> None:
    config = load(["--once", "--try", "30", "--", "backup.sh"])
    assert (config.once, config.try_s, config.command) == (True, 30.0, ("backup.sh",))
    assert config.on_child_exit is ChildExitPolicy.EXIT
    assert load(["--try", "1"]).command == (), "--try needs no command: hooks alone may run"


@pytest.mark.parametrize(
    ("configured", "log_format", "effective"),
    [
        (None, LogFormat.JSON, ChildOutput.LOG),
        (None, LogFormat.CONSOLE, ChildOutput.INHERIT),
        (ChildOutput.INHERIT, LogFormat.JSON, ChildOutput.INHERIT),
        (ChildOutput.STDERR, LogFormat.JSON, ChildOutput.STDERR),
        (ChildOutput.LOG, LogFormat.CONSOLE, ChildOutput.LOG),
    ],
)
def test_child_output_defaults_to_keeping_json_stdout_clean(
    configured: ChildOutput | None, log_format: LogFormat, effective: ChildOutput
) -> None:
    assert make(child_output=configured).child_output_for(log_format) is effective


def test_long_values_are_truncated_in_messages() -> None:
    with pytest.raises(ConfigError) as caught:
        make(path="relative/" + "a" * 10_000)
    assert "'relative/aaa" in caught.value.message
    assert caught.value.message.endswith("...")
    assert_one_line(caught.value)


def test_choices_accept_their_text() -> None:
    config = make(on_child_exit="rejoin", log_format="console")
    assert config.on_child_exit is ChildExitPolicy.REJOIN
    assert config.log_format is LogFormat.CONSOLE


def test_data_keeps_the_value_and_compact_utf8_bytes() -> None:
    config = load(["--data", '{"role": "primary", "zone": "é", "n": [1, 2.5, null]}'])
    assert config.data == {"role": "primary", "zone": "é", "n": [1, 2.5, None]}
    assert config.data_bytes == '{"role":"primary","zone":"é","n":[1,2.5,null]}'.encode()
    # JSON null is no data: nothing is published, as the library does with data=None.
    null = load(["--data", "null"])
    assert null.data is None
    assert null.data_bytes is None
    assert make(data={"n": 1}).data_bytes == b'{"n":1}'


def test_data_up_to_the_limit_is_accepted() -> None:
    text = json.dumps("x" * (MAX_DATA_BYTES - 2))
    config = load(["--data", text])
    assert config.data_bytes is not None
    assert len(config.data_bytes) == MAX_DATA_BYTES


def test_http_port_zero_is_accepted() -> None:
    assert load(["--http", "127.0.0.1:0"]).http_address == ("127.0.0.1", 0)
    assert make(http_address=("::1", 0)).http_address == ("::1", 0)


@pytest.mark.parametrize("address", [("", 1), ("h", 65536), ("h", True), "h:1", ("h", 1, 2)])
def test_http_address_must_be_a_host_and_port(address: object) -> None:
    with pytest.raises(ConfigError) as caught:
        make(http_address=address)
    assert caught.value.field == "--http"


def test_data_values_are_held_to_the_payload_rules() -> None:
    with pytest.raises(ConfigError) as caught:
        make(data=float("nan"))
    assert caught.value.field == "--data"
    with pytest.raises(ConfigError) as caught:
        make(data="x" * MAX_DATA_BYTES)
    assert f"more than the limit of {MAX_DATA_BYTES}" in caught.value.message


# ---------------------------------------------------------------------------------------------
# Kill grace


def test_kill_grace_defaults_to_a_sixth_of_the_session_timeout() -> None:
    config = make(session_timeout_s=12.0)
    assert config.kill_grace_s == 2.0
    assert config.kill_grace_override_s is None
    assert config.warnings == ()


@pytest.mark.parametrize("kill_grace_s", [0.001, 1.0, 3.0])
def test_kill_grace_up_to_a_quarter_is_quiet(kill_grace_s: float) -> None:
    config = make(session_timeout_s=12.0, kill_grace_override_s=kill_grace_s)
    assert config.kill_grace_s == kill_grace_s
    assert config.warnings == ()


def test_kill_grace_above_a_quarter_warns() -> None:
    config = make(session_timeout_s=12.0, kill_grace_override_s=3.5)
    assert config.kill_grace_s == 3.5
    (warning,) = config.warnings
    assert warning.startswith("--kill-grace 3.5 s is more than a quarter of --session-timeout 12 s")
    assert "\n" not in warning


# ---------------------------------------------------------------------------------------------
# Environment errors


@pytest.mark.parametrize(
    ("name", "text", "field", "fragment"),
    [
        (
            "ELECTION_DAEMON_EXIT_ON_LOSS",
            "maybe",
            "--exit-on-loss",
            "ELECTION_DAEMON_EXIT_ON_LOSS must be one of 1, true, yes, 0, false, no, got 'maybe'",
        ),
        (
            "ELECTION_DAEMON_SESSION_TIMEOUT",
            "abc",
            "--session-timeout",
            "ELECTION_DAEMON_SESSION_TIMEOUT must be a number of seconds, got 'abc'",
        ),
        ("ELECTION_DAEMON_PRIORITY", "high", "--priority", "must be an integer, got 'high'"),
        ("ELECTION_DAEMON_COMMAND", "sh -c 'x", "command", "ELECTION_DAEMON_COMMAND must be shell words"),
        (
            "ELECTION_DAEMON_HOST",
            "zk",
            "ELECTION_DAEMON_HOST",
            "unknown variable (did you mean ELECTION_DAEMON_HOSTS?)",
        ),
        ("ELECTION_DAEMON_XYZZY", "1", "ELECTION_DAEMON_XYZZY", "unknown variable"),
        (
            "ELECTION_DAEMON_SESSION_TIMEOUT",
            "0",
            "--session-timeout",
            "got 0.0 (from ELECTION_DAEMON_SESSION_TIMEOUT)",
        ),
        (
            "ELECTION_DAEMON_LOG_FORMAT",
            "text",
            "--log-format",
            "got 'text' (from ELECTION_DAEMON_LOG_FORMAT)",
        ),
    ],
)
def test_environment_errors(name: str, text: str, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(environ={name: text})
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert_one_line(caught.value)


def test_flag_errors_do_not_claim_another_origin() -> None:
    with pytest.raises(ConfigError) as caught:
        load(["--session-timeout", "0"], {"ELECTION_DAEMON_SESSION_TIMEOUT": "5"})
    assert "(from" not in caught.value.message


# ---------------------------------------------------------------------------------------------
# TOML errors


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load(["--config", str(missing)])
    assert caught.value.field == "--config"
    assert caught.value.message == f"cannot read {missing}: No such file or directory"


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(["--config", str(tmp_path)])
    assert caught.value.field == "--config"
    assert caught.value.message.startswith(f"cannot read {tmp_path}: ")


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    config_file = write_toml(tmp_path, 'hosts = "a:1"\npath = \n')
    with pytest.raises(ConfigError) as caught:
        load(["--config", str(config_file)])
    assert caught.value.field == "--config"
    assert caught.value.message.startswith(f"invalid TOML in {config_file}: ")
    assert "line 2" in caught.value.message
    assert_one_line(caught.value)


def test_config_file_not_utf8(tmp_path: Path) -> None:
    config_file = tmp_path / "daemon.toml"
    config_file.write_bytes(b'id = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load(["--config", str(config_file)])
    assert caught.value.field == "--config"
    assert caught.value.message == f"{config_file} is not UTF-8 (byte 6)"


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("sesion-timeout = 3\n", "unknown key 'sesion-timeout' in {file} (did you mean session-timeout?)"),
        ("config = 'other.toml'\n", "unknown key 'config' in {file}"),
        ("[hosts]\nx = 1\n", "must be a string"),
        (
            "session-timeout = 3\nsession_timeout = 4\n",
            "keys 'session-timeout' and 'session_timeout' in {file}",
        ),
    ],
)
def test_config_file_key_errors(tmp_path: Path, toml: str, fragment: str) -> None:
    config_file = write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load(["--config", str(config_file)])
    assert fragment.format(file=config_file) in caught.value.message
    assert_one_line(caught.value)


@pytest.mark.parametrize(
    ("toml", "field", "expectation"),
    [
        ('session-timeout = "ten"', "--session-timeout", "must be a number of seconds, got 'ten'"),
        ("session-timeout = true", "--session-timeout", "must be a number of seconds, got True"),
        ("priority = 1.5", "--priority", "must be an integer, got 1.5"),
        ("priority = false", "--priority", "must be an integer, got False"),
        ('exit-on-loss = "yes"', "--exit-on-loss", "must be a boolean, got 'yes'"),
        ("id = 5", "--id", "must be a string, got 5"),
        ('command = "sleep 1"', "command", "must be a list of strings, got 'sleep 1'"),
        ('command = ["sleep", 1]', "command", "must be a list of strings, got ['sleep', 1]"),
        ("data = { role = 'x' }", "--data", "must be a string, got {'role': 'x'}"),
    ],
)
def test_config_file_wrong_types_name_key_and_file(
    tmp_path: Path, toml: str, field: str, expectation: str
) -> None:
    config_file = write_toml(tmp_path, toml + "\n")
    key = toml.partition(" =")[0]
    with pytest.raises(ConfigError) as caught:
        load(["--config", str(config_file)])
    assert caught.value.field == field
    assert caught.value.message == f"key {key!r} in {config_file} {expectation}"


def test_invalid_value_from_file_names_its_origin(tmp_path: Path) -> None:
    config_file = write_toml(tmp_path, 'path = "/zookeeper/x"\n')
    with pytest.raises(ConfigError) as caught:
        load_daemon_config(["--hosts", "zk", "--config", str(config_file)], {})
    assert caught.value.field == "--path"
    assert caught.value.message.endswith(f"(from key 'path' in {config_file})")


# ---------------------------------------------------------------------------------------------
# Exit codes


def test_exit_code_values_are_the_documented_ones() -> None:
    assert {code.name: code.value for code in ExitCode} == {
        "OK": 0,
        "FAILURE": 1,
        "USAGE": 2,
        "ZK_UNREACHABLE": 3,
        "ZK_REFUSED": 4,
        "COMMAND_FAILED": 5,
        "LEADERSHIP_LOST": 6,
        "VERIFY_FAILED": 7,
        "OPERATION_FAILED": 8,
        "ELECTION_FAILED": 9,
        "TLS_FAILED": 10,
        "NOT_ELECTED": 11,
    }
    assert ExitCode(3) is ExitCode.ZK_UNREACHABLE
    assert all(code.__doc__ for code in ExitCode)


def test_exit_code_table_rendering() -> None:
    table = render_exit_codes()
    lines = table.splitlines()
    assert lines[0] == "exit codes:"
    assert lines[1] == "  0  OK                clean shutdown"
    assert "  3  ZK_UNREACHABLE    no ZooKeeper server answered within --connect-timeout" in lines
    for code in ExitCode:
        assert f"  {code.value}  {code.name} " in table
    assert "128+N" in table
    assert all(len(line) <= 79 for line in lines)


def test_parser_epilog_lists_exit_codes_and_environment() -> None:
    parser = build_daemon_parser()
    assert parser.prog == "election-daemon"
    epilog = parser.epilog or ""
    assert render_exit_codes() in epilog
    for name in ("CONFIG", "HOSTS", "SESSION_TIMEOUT", "EXIT_ON_LOSS", "COMMAND", "PRIORITY"):
        assert f"ELECTION_DAEMON_{name} " in epilog
