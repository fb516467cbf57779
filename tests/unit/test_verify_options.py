"""verify's --report: a place it cannot write to is a usage error (exit 2, one line), before any run."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from election_daemon.cli.verify import main
from election_daemon.daemon.exitcodes import ExitCode

pytestmark = pytest.mark.timeout(10)


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(argv, {})
    return code, err.getvalue()


@pytest.mark.parametrize(
    "report",
    [
        "/proc/version/report",  # under a file
        "/proc/election-verify-report",  # a file system that takes no directories
        "{file}",  # an existing file
        "{file}/sub",
    ],
)
def test_an_unwritable_report_place_is_a_usage_error(tmp_path: Path, report: str) -> None:
    existing = tmp_path / "a-file"
    existing.write_text("x")
    code, err = run(["--quick", "--report", report.format(file=existing)])
    assert code == ExitCode.USAGE
    assert err.startswith("election-daemon: error: --report: cannot write to ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_directory_is_a_usage_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        code, err = run(["--quick", "--report", str(tmp_path / "r")])
    finally:
        tmp_path.chmod(0o700)
    assert code == ExitCode.USAGE
    assert "Permission denied" in err
