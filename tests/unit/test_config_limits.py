"""Config hardening: non-regular config files, ASCII-only numbers, blank identities, strict bounded
``--data``, ``--recipe``, ``--clear-env``/``--pass-env``."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from election_daemon.cli.run import load_daemon_config
from election_daemon.daemon.config import (
    MAX_DATA_BYTES,
    DaemonConfig,
    child_base_environment,
)
from election_daemon.errors import ConfigError
from election_daemon.library import payload
from election_daemon.library.recipes import Recipe

pytestmark = pytest.mark.timeout(10)

REQUIRED = ["--hosts", "zk:2181", "--path", "/svc/leader"]


def load(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> DaemonConfig:
    return load_daemon_config([*REQUIRED, *(argv or [])], environ or {})


def make(**overrides: Any) -> DaemonConfig:
    return DaemonConfig(**{"hosts": "zk:2181", "path": "/svc/leader", **overrides})


def refused(field: str, argv: list[str] | None = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(argv, environ)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)
    return caught.value.message


# -- config files that are not regular files ----------------------------------------------------


def test_a_fifo_config_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    # A writer that holds the FIFO open and never writes: a plain read would block for ever.
    holder = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_RDWR)), daemon=True)
    holder.start()
    message = refused("--config", ["--config", str(fifo)])
    assert message == f"cannot read {fifo}: not a regular file"


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "/dev/stdin"])
def test_device_config_files_are_refused(special: str) -> None:
    if not os.path.exists(special):
        pytest.skip(f"no {special}")
    assert "not a regular file" in refused("--config", ["--config", special])


def test_a_directory_config_file_is_refused(tmp_path: Path) -> None:
    assert refused("--config", ["--config", str(tmp_path)]) == f"cannot read {tmp_path}: a directory"


def test_config_file_from_environment_is_checked_too(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in refused("--config", environ={"ELECTION_DAEMON_CONFIG": str(fifo)})


def test_a_huge_config_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    with big.open("wb") as file:
        file.truncate(5 * 1024 * 1024)
    assert "bytes, more than" in refused("--config", ["--config", str(big)])


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text("priority = 3\n")
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    assert load(["--config", str(link)]).priority == 3


# -- numbers: ASCII digits only -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["٣", "1_0", "²", "0x10", "1e3", "", "five", "三", "+-1"])
def test_priority_takes_ascii_digits_only(text: str) -> None:
    assert "must be an integer" in refused("--priority", ["--priority", text])


@pytest.mark.parametrize("text", ["٣", "1_0"])
def test_priority_from_the_environment_takes_ascii_digits_only(text: str) -> None:
    message = refused("--priority", environ={"ELECTION_DAEMON_PRIORITY": text})
    assert "ELECTION_DAEMON_PRIORITY must be an integer" in message


@pytest.mark.parametrize(("text", "value"), [("5", 5), ("-5", -5), ("+5", 5), (" 7 ", 7), ("007", 7)])
def test_priority_accepts_plain_integers(text: str, value: int) -> None:
    assert load(["--priority", text]).priority == value


@pytest.mark.parametrize("text", ["٣", "1_0", "nan", "inf", "infinity", "\uff11"])
def test_seconds_take_ascii_digits_only(text: str) -> None:
    assert "must be a number of seconds" in refused("--session-timeout", ["--session-timeout", text])


@pytest.mark.parametrize(("text", "value"), [("6", 6.0), ("2.5", 2.5), (".5", 0.5), ("1e1", 10.0)])
def test_seconds_accept_decimal_numbers(text: str, value: float) -> None:
    assert load(["--session-timeout", text]).session_timeout_s == value


@pytest.mark.parametrize("port", ["٣٣", "+80", "8_0", "²", " 80", "-1"])
def test_http_port_takes_ascii_digits_only(port: str) -> None:
    assert "port must be" in refused("--http", ["--http", f"127.0.0.1:{port}"])


@pytest.mark.parametrize("port", ["٣٣", "+80", "8_0"])
def test_zookeeper_port_takes_ascii_digits_only(port: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_daemon_config(["--hosts", f"zk:{port}", "--path", "/p"], {})
    assert caught.value.field == "--hosts"


# -- identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", [" ", "   ", "\u3000", "\u2003 "])
def test_a_whitespace_identity_is_refused(identity: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make(identity=identity)
    assert caught.value.field == "--id"


def test_an_identity_with_inner_spaces_is_fine() -> None:
    assert make(identity="billing a").identity == "billing a"


# -- --data: strict and bounded, as every reader decodes it -------------------------------------


def test_max_data_bytes_is_the_payload_limit() -> None:
    assert MAX_DATA_BYTES == payload.MAX_DATA_BYTES


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("NaN", "NaN is not JSON"),
        ("Infinity", "Infinity is not JSON"),
        ("[-Infinity]", "-Infinity is not JSON"),
        ("1e999", "finite"),
        ('{"a": [1e400]}', "finite"),
        ("[" * (payload.MAX_DEPTH + 1) + "]" * (payload.MAX_DEPTH + 1), "nested deeper"),
        ("[" * 100_000, "nested deeper"),
        ("{", "Expecting property name"),
    ],
)
def test_data_is_strict_and_bounded(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(["--data", text])
    assert caught.value.field == "--data"
    assert caught.value.message.startswith("must be valid JSON (")
    assert fragment in caught.value.message
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 300


def test_data_at_the_depth_limit_is_accepted() -> None:
    depth = payload.MAX_DEPTH
    config = load(["--data", "[" * depth + "]" * depth])
    assert config.data_bytes == ("[" * depth + "]" * depth).encode()


def test_pretty_printed_data_counts_its_compact_size() -> None:
    value = ["x" * 1000] * 900  # ~900 KB compact, far more with the indentation below
    text = json.dumps(value, indent=200)
    assert len(text) > MAX_DATA_BYTES
    assert load(["--data", text]).data == value


# -- --recipe ---------------------------------------------------------------------------------


def test_recipe_defaults_to_native_and_comes_from_everywhere(tmp_path: Path) -> None:
    assert load().recipe is Recipe.NATIVE
    config_file = tmp_path / "c.toml"
    config_file.write_text('recipe = "kazoo"\n')
    assert load(["--config", str(config_file)]).recipe is Recipe.KAZOO
    assert (
        load(["--config", str(config_file)], {"ELECTION_DAEMON_RECIPE": "curator"}).recipe is Recipe.CURATOR
    )
    assert load(["--recipe", "native"], {"ELECTION_DAEMON_RECIPE": "curator"}).recipe is Recipe.NATIVE


def test_unknown_recipe_is_refused() -> None:
    message = refused("--recipe", ["--recipe", "zookeeper"])
    assert "must be one of 'native', 'curator', 'kazoo', got 'zookeeper'" in message


@pytest.mark.parametrize("recipe", ["curator", "kazoo"])
def test_foreign_recipes_take_no_data_and_no_priority(recipe: str) -> None:
    assert f"not supported with --recipe {recipe}" in refused("--data", ["--recipe", recipe, "--data", "{}"])
    assert f"not supported with --recipe {recipe}" in refused(
        "--priority", ["--recipe", recipe, "--priority", "1"]
    )
    assert load(["--recipe", recipe, "--priority", "0"]).priority == 0


# -- --clear-env / --pass-env -----------------------------------------------------------------


def test_clear_env_is_off_by_default() -> None:
    config = load()
    assert config.clear_env is False
    assert config.pass_env == ()
    assert config.child_environment({"SECRET": "x"}) is None


def test_pass_env_from_flags_environment_and_file(tmp_path: Path) -> None:
    assert load(["--clear-env", "--pass-env", "A", "--pass-env", "B"]).pass_env == ("A", "B")
    environ = {"ELECTION_DAEMON_CLEAR_ENV": "yes", "ELECTION_DAEMON_PASS_ENV": "A, B C"}
    config = load(environ=environ)
    assert config.clear_env is True
    assert config.pass_env == ("A", "B", "C")
    config_file = tmp_path / "c.toml"
    config_file.write_text('clear-env = true\npass-env = ["X", "Y"]\n')
    from_file = load(["--config", str(config_file)])
    assert (from_file.clear_env, from_file.pass_env) == (True, ("X", "Y"))
    assert load(["--config", str(config_file), "--pass-env", "Z"]).pass_env == ("Z",)
    assert load(["--config", str(config_file), "--no-clear-env"]).clear_env is False


@pytest.mark.parametrize("name", ["1A", "A-B", "A=B", "", "É"])
def test_pass_env_takes_variable_names(name: str) -> None:
    assert "variable name" in refused("--pass-env", ["--clear-env", "--pass-env", name])


def test_pass_env_in_the_file_must_be_a_list(tmp_path: Path) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text('pass-env = "A"\n')
    assert "must be a list of strings" in refused("--pass-env", ["--config", str(config_file)])


def test_pass_env_without_clear_env_warns() -> None:
    (warning,) = load(["--pass-env", "A"]).warnings
    assert "--pass-env has no effect without --clear-env" in warning


def test_child_environment_keeps_only_essentials_and_named_variables() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TZ": "UTC",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "ELECTION_DAEMON_HOSTS": "zk",
        "DATABASE_URL": "postgres://",
    }
    config = load(["--clear-env", "--pass-env", "DATABASE_URL"])
    assert config.child_environment(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TZ": "UTC",
        "DATABASE_URL": "postgres://",
    }
    assert child_base_environment(environ) == {
        k: environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
    }


def test_help_lists_the_new_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_daemon_config(["--help"], {})
    out = capsys.readouterr().out
    for text in (
        "--recipe",
        "--clear-env",
        "--pass-env NAME",
        "ELECTION_DAEMON_RECIPE",
        "ELECTION_DAEMON_PASS_ENV",
    ):
        assert text in out
