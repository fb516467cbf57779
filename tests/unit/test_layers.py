"""The house's layers as the interpreter sees them: the library loads no daemon or CLI machinery."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(30)

NOT_FOR_THE_LIBRARY = ("argparse", "tomllib", "aiohttp", "rich", "prometheus_client", "structlog")


def test_importing_the_library_loads_no_daemon_or_command_line_machinery() -> None:
    probe = (
        "import sys, election_daemon, election_daemon.fencing, election_daemon.errors\n"
        f"print(' '.join(m for m in {NOT_FOR_THE_LIBRARY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=20
    )
    assert result.stdout.split() == []
