"""The shipped systemd units and the README's "Install on a server", checked with systemd's own tools.

This machine's PID 1 is not systemd (nor can a ``systemd --user`` run here without one), so the
units are not booted: ``systemd-analyze verify`` checks them as systemd would load them,
``systemd-analyze security --offline`` rates their hardening, ``systemd-sysusers --root``
creates their user in a scratch root, and the README's install steps run in a fresh venv:
build the wheel, install it, run its entry point, find the units inside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from election_daemon.cli.run import load_daemon_config

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "election_daemon" / "_systemd"
README = REPO / "README.md"
MAX_EXPOSURE = 3.0
# Where the units expect the daemon: the README's venv.
INSTALLED_PROGRAM = "/opt/election-daemon/bin/election-daemon"
# What the template changes: the instance's name (%i) in these settings, and nothing else.
TEMPLATE_ONLY = {"Description", "StateDirectory", "WorkingDirectory", "EnvironmentFile", "ExecStart"}
TEMPLATE_ONLY |= {"SyslogIdentifier"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: install Debian's systemd package (make test does, as root)")
    return path


def _run(
    *argv: str,
    cwd: Path | None = None,
    timeout_s: float = 60,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    done = subprocess.run(
        argv, cwd=cwd, input=stdin, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _settings(unit: Path) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value assigned, in order; comments and blank lines left out."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key), []).append(value)
    return settings


@pytest.fixture(params=["election-daemon.service", "election-daemon@.service"])
def unit(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of a shipped unit, as systemd would load it (a template as an instance), with
    ExecStart's program present: the test runner's own entry point stands in for the venv's."""
    shipped: str = request.param
    name = shipped.replace("@.", "@billing.")
    text = (UNITS / shipped).read_text()
    assert INSTALLED_PROGRAM in text
    program = Path(sys.executable).with_name("election-daemon")
    assert program.exists(), program
    copy = tmp_path / name
    copy.write_text(text.replace(INSTALLED_PROGRAM, str(program)))
    return copy


@pytest.mark.timeout(60)
def test_systemd_analyze_verify_is_clean(unit: Path) -> None:
    output = _run(_tool("systemd-analyze"), "verify", str(unit))
    # verify exits 0 on unknown keys or bad values too: it only warns.
    assert output == "", output


@pytest.mark.timeout(60)
def test_the_hardening_rates_3_or_better(unit: Path) -> None:
    output = _run(_tool("systemd-analyze"), "security", "--offline=true", str(unit))
    [score] = re.findall(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert float(score) <= MAX_EXPOSURE, output
    # What keeps the daemon's process control working, the list, and the watchdog.
    settings = _settings(unit)
    assert settings["Service", "KillMode"] == ["mixed"]
    assert settings["Service", "NotifyAccess"] == ["main"]
    assert settings["Service", "CapabilityBoundingSet"] == [""]
    assert settings["Service", "ProtectProc"] == ["invisible"]
    assert settings["Service", "UMask"] == ["0027"]
    assert settings["Service", "ConfigurationDirectory"] == ["election-daemon"]
    assert settings["Service", "WatchdogSec"] == ["10s"]


def test_the_template_is_the_unit_with_the_instance_name() -> None:
    single = _settings(UNITS / "election-daemon.service")
    template = _settings(UNITS / "election-daemon@.service")
    assert single.keys() == template.keys()
    differing = {key for key, values in single.items() if template[key] != values}
    assert {key for _section, key in differing} == TEMPLATE_ONLY
    assert all("%i" in value for key in differing for value in template[key])
    assert template["Service", "ExecStart"] == [f"{INSTALLED_PROGRAM} --config /etc/election-daemon/%i.toml"]


@pytest.mark.timeout(60)
def test_sysusers_creates_the_units_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    conf = (UNITS / "sysusers.conf").read_text()
    _run(_tool("systemd-sysusers"), f"--root={tmp_path}", "-", stdin=conf)
    [user] = [
        line for line in (tmp_path / "etc/passwd").read_text().splitlines() if line.startswith("election-")
    ]
    name, _, uid, gid, _gecos, home, shell = user.split(":")
    units = [_settings(UNITS / unit) for unit in ("election-daemon.service", "election-daemon@.service")]
    assert all(settings["Service", "User"] == [name] for settings in units)
    assert all(settings["Service", "Group"] == [name] for settings in units)
    assert int(uid) < 1000 and gid == uid, "a system user with a group of its own"
    assert home == "/var/lib/election-daemon" == units[0]["Service", "WorkingDirectory"][0]
    assert shell.endswith("nologin")


def _install_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Install on a server\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_config_is_valid(tmp_path: Path) -> None:
    section = _install_section()
    [toml] = re.findall(r"<<'EOF'\n(.*?)\nEOF\n", section, re.DOTALL)
    config = tmp_path / "config.toml"
    config.write_text(toml + "\n")
    tomllib.loads(toml)
    loaded = load_daemon_config(["--config", str(config)], {})
    assert loaded.path == "/services/billing/leader"
    assert "Python 3.11 or later" in section and "pip install" in section


@pytest.mark.timeout(180)
def test_the_readme_install_steps_in_a_fresh_venv(tmp_path: Path) -> None:
    """Build the wheel from a clean copy of the source (an in-tree build would reuse a stale
    build/), install it into a new venv with its dependencies, run it, find the units in it."""
    section = _install_section()
    assert "python3 -m venv /opt/election-daemon" in section
    assert "/opt/election-daemon/bin/pip wheel --no-deps -w dist ." in section
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            "reports",
            "node_modules",
        ),
    )
    venv = tmp_path / "opt-election-daemon"
    _run(sys.executable, "-m", "venv", str(venv), timeout_s=120)
    pip = str(venv / "bin" / "pip")
    _run(pip, "wheel", "--no-deps", "-w", "dist", ".", cwd=source, timeout_s=180)
    [wheel] = (source / "dist").glob("election_daemon-*.whl")
    _run(pip, "install", str(wheel), timeout_s=180)

    version = _run(str(venv / "bin" / "election-daemon"), "--version", cwd=tmp_path)
    assert re.search(r"\d+\.\d+", version), version
    usage = _run(str(venv / "bin" / "election-daemon"), "--help", cwd=tmp_path)
    assert "--config FILE" in usage

    # The README's own line that finds the units.
    [locate] = re.findall(r"^units=\$\((.*)\)$", section, re.MULTILINE)
    locate = locate.replace("/opt/election-daemon", str(venv))
    found = Path(_run("sh", "-c", locate, cwd=tmp_path, env={"PATH": os.defpath}).strip())
    assert found.is_relative_to(venv), found
    for name in ("election-daemon.service", "election-daemon@.service", "sysusers.conf"):
        assert (found / name).read_bytes() == (UNITS / name).read_bytes(), name
        assert f'"$units/{name}"' in section, f"the README does not install {name}"

    # The lifeline guardian runs its script from the installed package (package data).
    lifeline = "import election_daemon.daemon.lifeline as m; print(m.__file__)"
    installed = Path(_run(str(venv / "bin" / "python"), "-c", lifeline, cwd=tmp_path).strip())
    assert installed.is_relative_to(venv), installed
    script = REPO / "election_daemon" / "daemon" / "lifeline.sh"
    assert installed.with_name("lifeline.sh").read_bytes() == script.read_bytes()
