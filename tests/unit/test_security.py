"""The TLS and credential options: checked once, one line each, the password never shown."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from election_daemon.cli.run import load_daemon_config
from election_daemon.daemon.logs import configure_logging, get_logger
from election_daemon.errors import ConfigError
from election_daemon.library.security import DigestAuth, check_auth, check_tls, read_auth_file

PASSWORD = "hunter2-very-secret"


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "auth"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_an_auth_file_holds_one_digest_line(tmp_path: Path) -> None:
    auth = read_auth_file(write(tmp_path, f"# comment\n\ndigest alice:{PASSWORD}\n"))
    assert auth.user == "alice" and auth.wire() == f"alice:{PASSWORD}".encode()
    assert auth == DigestAuth("alice", PASSWORD)


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (f"digest alice:{PASSWORD}\n", 0o644, "readable by others (mode 0644)"),
        (f"digest alice:{PASSWORD}\n", 0o640, "chmod 600"),
        (f"sasl alice:{PASSWORD}\n", 0o600, "must start with 'digest '"),
        (f"digest alice{PASSWORD}\n", 0o600, "user:password"),
        (f"digest alice:{PASSWORD}\ndigest bob:x\n", 0o600, "found 2 lines"),
        ("", 0o600, "found 0 lines"),
    ],
)
def test_bad_auth_files_are_refused_without_quoting_them(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    with pytest.raises(ConfigError, match="--auth-file") as caught:
        read_auth_file(write(tmp_path, text, mode))
    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_an_auth_file_must_be_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        read_auth_file(tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_auth_file(tmp_path / "missing")


def test_credentials_never_show() -> None:
    auth = DigestAuth("alice", PASSWORD)
    for text in (repr(auth), str(auth), repr(check_auth(f"alice:{PASSWORD}")), f"{auth!r}"):
        assert PASSWORD not in text and "alice" in text
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(auth)


def test_a_logged_traceback_with_locals_does_not_show_the_password() -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        auth = DigestAuth("alice", PASSWORD)
        try:
            raise RuntimeError(f"failed for {auth!r}")
        except RuntimeError:
            get_logger().exception("internal_error")
    finally:
        logging.getLogger().handlers.clear()
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert "exception" in record and "alice" in stream.getvalue()
    assert PASSWORD not in stream.getvalue()


def test_tls_options_are_checked_with_the_flags_names(tmp_path: Path) -> None:
    assert check_tls(None) is None
    with pytest.raises(ConfigError, match="--tls-key: needs --tls-cert"):
        check_tls(None, key=tmp_path, field="--tls")
    with pytest.raises(ConfigError, match="--tls-no-verify-hostname: needs TLS"):
        check_tls(None, verify_hostname=False, field="--tls")
    with pytest.raises(ConfigError, match=r"--tls-ca: cannot read .*: not a regular file"):
        check_tls(None, ca=tmp_path, field="--tls")
    not_pem = write(tmp_path, "not a certificate")
    with pytest.raises(ConfigError, match="--tls-ca: cannot load CA bundle"):
        check_tls(None, ca=not_pem, field="--tls")


def test_the_daemon_reads_tls_and_auth_from_flags_environment_and_file(tmp_path: Path) -> None:
    secret = write(tmp_path, f"digest alice:{PASSWORD}\n")
    base = ["--hosts", "zk:2181", "--path", "/e"]
    config = load_daemon_config([*base, "--auth-file", str(secret)], {})
    assert config.auth == (DigestAuth("alice", PASSWORD),) and config.tls_context is None
    assert PASSWORD not in repr(config)
    config = load_daemon_config(base, {"ELECTION_DAEMON_AUTH_FILE": str(secret)})
    assert config.auth[0].user == "alice"
    toml = tmp_path / "config.toml"
    toml.write_text(f'auth-file = "{secret}"\ntls-no-verify-hostname = true\n')
    with pytest.raises(ConfigError, match="--tls-no-verify-hostname: needs TLS"):
        load_daemon_config([*base, "--config", str(toml)], {})
    secret.chmod(0o604)
    with pytest.raises(ConfigError, match=r"readable by others.*\(from ELECTION_DAEMON_AUTH_FILE\)"):
        load_daemon_config(base, {"ELECTION_DAEMON_AUTH_FILE": str(secret)})
