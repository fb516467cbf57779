"""The Compose demo: docker-compose.yml as Compose itself resolves it, the Dockerfile, .dockerignore.

No container engine is needed: ``docker-compose config`` validates and resolves the file (anchors,
merges, escapes), and each daemon's resolved environment and command go through the daemon's
real configuration loader. The TLS variant (profile ``tls``): its certificate script runs here
with openssl, and a real ZooKeeper server runs with its zoo.cfg lines and certificates.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_acl

from election_daemon.cli.run import load_daemon_config
from election_daemon.daemon.config import DaemonConfig
from election_daemon.testing import daemon_environment
from election_daemon.testing.pytest_plugin import ZooKeeperFactory

ROOT = Path(__file__).resolve().parents[2]
ZOOKEEPERS = ("zoo1", "zoo2", "zoo3")
DAEMONS = ("daemon1", "daemon2", "daemon3")
CLIENT_PORT = 2181
TLS_PROFILE = "tls"
TLS_ZOOKEEPERS = ("zoo1-tls", "zoo2-tls", "zoo3-tls")
TLS_GENERATOR = "tls-certs"
TLS_DAEMONS = ("daemon1-tls", "daemon2-tls", "daemon3-tls")
SECURE_CLIENT_PORT = 2281
TLS_DIR = "/tls"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as ``docker-compose config`` resolves it."""
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    result = subprocess.run(
        # With the profile, Compose v2 lists the TLS variant's services too (v1 always does).
        [executable, "-f", "docker-compose.yml", "--profile", TLS_PROFILE, "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    document = yaml.safe_load(result.stdout)
    assert isinstance(document, dict)
    return document


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose["services"]
    assert name in services, f"no service {name}; services: {sorted(services)}"
    definition = services[name]
    assert isinstance(definition, dict)
    return definition


def environment(definition: dict[str, Any]) -> dict[str, str]:
    env = definition.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def unescape(word: str) -> str:
    """A word as the container gets it: Compose turns ``$$`` into ``$``."""
    return word.replace("$$", "$")


def daemon_config(definition: dict[str, Any]) -> DaemonConfig:
    """What the daemon in this service would run with: its command line and environment, loaded for real."""
    command = definition.get("command") or []
    argv = shlex.split(command) if isinstance(command, str) else [str(word) for word in command]
    return load_daemon_config([unescape(word) for word in argv], environment(definition))


def test_the_file_has_exactly_the_ensemble_and_the_daemons(compose: dict[str, Any]) -> None:
    default = [name for name, definition in compose["services"].items() if not definition.get("profiles")]
    assert sorted(default) == sorted(ZOOKEEPERS + DAEMONS)


def test_the_tls_profile_has_exactly_the_certificate_generator_a_tls_ensemble_and_its_daemons(
    compose: dict[str, Any],
) -> None:
    profiled = {name: definition.get("profiles") for name, definition in compose["services"].items()}
    tls = sorted(name for name, profiles in profiled.items() if profiles)
    assert tls == sorted((TLS_GENERATOR, *TLS_ZOOKEEPERS, *TLS_DAEMONS))
    assert all(profiled[name] == [TLS_PROFILE] for name in tls)


@pytest.mark.parametrize("name", ZOOKEEPERS)
def test_each_zookeeper_server_is_the_official_image_with_its_own_id(
    compose: dict[str, Any], name: str
) -> None:
    definition = service(compose, name)
    assert definition["image"] == "zookeeper:3.8"
    env = environment(definition)
    assert env["ZOO_MY_ID"] == name.removeprefix("zoo")
    # The service name is the host name the others (and the daemons) reach it by.
    assert definition.get("hostname", name) == name


def test_the_servers_agree_on_one_three_member_ensemble(compose: dict[str, Any]) -> None:
    listings = {name: environment(service(compose, name))["ZOO_SERVERS"].split() for name in ZOOKEEPERS}
    assert len({tuple(servers) for servers in listings.values()}) == 1, listings
    members = {}
    for entry in listings["zoo1"]:
        match = re.fullmatch(r"server\.(\d+)=([\w.-]+):(\d+):(\d+)(?:;(?:[\w.]+:)?(\d+))?", entry)
        assert match, f"not a server.N=host:quorum:election[;client] entry: {entry}"
        members[int(match[1])] = (match[2], int(match[5] or CLIENT_PORT))
    assert members == {1: ("zoo1", CLIENT_PORT), 2: ("zoo2", CLIENT_PORT), 3: ("zoo3", CLIENT_PORT)}


def test_the_servers_tick_fast_and_answer_the_healthcheck_word(compose: dict[str, Any]) -> None:
    for name in ZOOKEEPERS:
        definition = service(compose, name)
        env = environment(definition)
        assert int(env["ZOO_TICK_TIME"]) <= 1000, "a short tick makes failover quick to watch"
        whitelist = env["ZOO_4LW_COMMANDS_WHITELIST"].split(",")
        assert {"ruok", "srvr"} <= set(whitelist) or whitelist == ["*"]
        test = " ".join(definition["healthcheck"]["test"])
        assert "ruok" in test and "imok" in test


@pytest.mark.parametrize("name", DAEMONS)
def test_each_daemon_runs_the_image_built_here_under_an_init(compose: dict[str, Any], name: str) -> None:
    definition = service(compose, name)
    build = definition["build"]
    context = build["context"] if isinstance(build, dict) else build
    assert Path(context).resolve() == ROOT
    assert definition["init"] is True, "init: true reaps zombies and forwards docker stop's SIGTERM"
    assert set(ZOOKEEPERS) <= set(definition["depends_on"])


@pytest.mark.parametrize("name", DAEMONS)
def test_each_daemon_environment_loads_into_the_intended_config(compose: dict[str, Any], name: str) -> None:
    definition = service(compose, name)
    assert all(key.startswith("ELECTION_DAEMON_") for key in environment(definition))
    config = daemon_config(definition)
    assert config.servers == tuple((host, CLIENT_PORT) for host in ZOOKEEPERS)
    assert config.identity == name
    assert 3.0 <= config.session_timeout_s <= 5.0
    assert config.command[:2] == ("sh", "-c")
    assert "$ELECTION_ID" in config.command[2] and "$ELECTION_TOKEN" in config.command[2]


@pytest.mark.parametrize("name", DAEMONS)
def test_each_daemon_serves_http_and_its_healthcheck_asks_for_health(
    compose: dict[str, Any], name: str
) -> None:
    definition = service(compose, name)
    address = daemon_config(definition).http_address
    assert address is not None
    host, port = address
    assert host == "0.0.0.0", "published ports reach the daemon through the container's network interface"
    test = " ".join(definition["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/health" in test


def test_the_daemons_compete_on_one_path_with_distinct_ids(compose: dict[str, Any]) -> None:
    configs = [daemon_config(service(compose, name)) for name in DAEMONS]
    assert len({config.path for config in configs}) == 1
    assert len({config.identity for config in configs}) == len(DAEMONS)


def test_the_session_timeout_is_one_the_servers_grant(compose: dict[str, Any]) -> None:
    # ZooKeeper clamps session timeouts to 2..20 ticks by default.
    tick_s = int(environment(service(compose, "zoo1"))["ZOO_TICK_TIME"]) / 1000
    for name in DAEMONS:
        assert 2 * tick_s <= daemon_config(service(compose, name)).session_timeout_s <= 20 * tick_s


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def test_the_dockerfile_builds_on_python_slim_and_installs_the_package() -> None:
    instructions = dockerfile_instructions()
    bases = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert bases == ["python:3.11-slim"]
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert re.search(r"pip install\b", runs)


def test_the_dockerfile_runs_the_daemon_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    entrypoints = [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
    # Exec form: the daemon is the process that gets docker stop's SIGTERM, not a shell.
    assert json.loads(entrypoints[-1]) == ["python", "-m", "election_daemon"]


def test_the_entrypoint_module_starts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "election_daemon", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ELECTION_DAEMON_HOSTS" in result.stdout


def test_the_build_context_holds_what_pip_install_needs() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # An allow-list: everything is excluded, then the package's sources are let back in.
    assert rules[0] == "*"
    assert {"!pyproject.toml", "!election_daemon/"} <= set(rules)


# The TLS variant


def tls_script(compose: dict[str, Any]) -> str:
    """The certificate generator's shell script, as its container gets it."""
    definition = service(compose, TLS_GENERATOR)
    assert definition["entrypoint"] == ["sh", "-c"]
    [script] = definition["command"]
    return unescape(script)


def cfg_extra(definition: dict[str, Any]) -> dict[str, str]:
    """ZOO_CFG_EXTRA as the image's entrypoint writes it to zoo.cfg: one line per word."""
    words = environment(definition)["ZOO_CFG_EXTRA"].split()
    assert all("=" in word for word in words), words
    return dict(word.split("=", 1) for word in words)


@pytest.fixture(scope="module")
def generated(compose: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificates, generated by the compose file's own script into a temporary TLS_DIR."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("compose-tls")
    result = subprocess.run(
        ["sh", "-c", tls_script(compose)],
        env={"PATH": "/usr/bin:/bin", "TLS_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return directory


@pytest.mark.parametrize("name", TLS_ZOOKEEPERS)
def test_each_tls_server_is_the_official_image_serving_tls_only(compose: dict[str, Any], name: str) -> None:
    definition = service(compose, name)
    assert definition["image"] == "zookeeper:3.8"
    assert definition["hostname"] == name
    env = environment(definition)
    assert env["ZOO_MY_ID"] == name.removeprefix("zoo").removesuffix("-tls")
    # No ";2181" on the entries: the servers have no plain client port.
    assert env["ZOO_SERVERS"].split() == [f"server.{i}=zoo{i}-tls:2888:3888" for i in (1, 2, 3)]
    assert definition["depends_on"] == {TLS_GENERATOR: {"condition": "service_completed_successfully"}}
    assert definition["volumes"] == [f"{TLS_GENERATOR}:{TLS_DIR}:ro"]
    extra = cfg_extra(definition)
    assert extra == {
        "secureClientPort": str(SECURE_CLIENT_PORT),
        "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
        "ssl.keyStore.location": f"{TLS_DIR}/server-keystore.pem",
        "ssl.keyStore.type": "PEM",
        "ssl.trustStore.location": f"{TLS_DIR}/ca.pem",
        "ssl.trustStore.type": "PEM",
        "ssl.clientAuth": "need",
        "authProvider.x509": "org.apache.zookeeper.server.auth.X509AuthenticationProvider",
    }
    test = " ".join(definition["healthcheck"]["test"])
    assert f"127.0.0.1:{SECURE_CLIENT_PORT}" in test and "ruok" in test and "imok" in test


def test_the_generator_writes_the_files_the_servers_and_clients_name(
    compose: dict[str, Any], generated: Path
) -> None:
    definition = service(compose, TLS_GENERATOR)
    assert definition["image"] == "zookeeper:3.8", "openssl comes with the ZooKeeper image"
    assert definition["volumes"] == [f"{TLS_GENERATOR}:{TLS_DIR}:rw"]
    assert TLS_GENERATOR in compose["volumes"]
    named = {
        Path(value).name
        for value in cfg_extra(service(compose, "zoo1-tls")).values()
        if value.startswith("/")
    }
    named |= set(
        re.findall(rf"{TLS_DIR}/([\w.-]+)", " ".join(service(compose, "zoo1-tls")["healthcheck"]["test"]))
    )
    assert named <= {path.name for path in generated.iterdir()}
    for name in ("server", "participant-a", "operator"):
        # ZooKeeper's PEM reader takes PKCS#8 keys; its key store is the key, then the certificate.
        key = (generated / f"{name}-key.pem").read_text()
        assert key.startswith("-----BEGIN PRIVATE KEY-----")
        assert (generated / f"{name}-keystore.pem").read_text() == key + (
            generated / f"{name}.pem"
        ).read_text()
        cert = x509.load_pem_x509_certificate((generated / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate((generated / "ca.pem").read_bytes()))
    server = x509.load_pem_x509_certificate((generated / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(TLS_ZOOKEEPERS) <= set(names.get_values_for_type(x509.DNSName))
    participant = x509.load_pem_x509_certificate((generated / "participant-a.pem").read_bytes())
    assert participant.subject.rfc4514_string() == "CN=participant-a,OU=demo,O=election_daemon"
    # A second run keeps what the first one made.
    before = (generated / "ca.pem").read_bytes()
    subprocess.run(
        ["sh", "-c", tls_script(compose)],
        env={"PATH": "/usr/bin:/bin", "TLS_DIR": str(generated)},
        capture_output=True,
        check=True,
        timeout=50,
    )
    assert (generated / "ca.pem").read_bytes() == before


def tls_daemon_environment(definition: dict[str, Any], generated: Path) -> dict[str, str]:
    """The daemon's environment with the certificates where the generator wrote them here."""
    return {key: value.replace(TLS_DIR, str(generated)) for key, value in environment(definition).items()}


@pytest.mark.parametrize("name", TLS_DAEMONS)
def test_each_tls_daemon_is_the_daemon_image_on_the_tls_ensemble_with_a_client_certificate(
    compose: dict[str, Any], generated: Path, name: str
) -> None:
    definition = service(compose, name)
    plain = service(compose, "daemon1")
    assert definition["image"] == plain["image"] and definition["build"] == plain["build"]
    assert definition["init"] is True
    assert set(TLS_ZOOKEEPERS) <= set(definition["depends_on"])
    assert all(definition["depends_on"][zk] == {"condition": "service_healthy"} for zk in TLS_ZOOKEEPERS)
    assert definition["volumes"] == [f"{TLS_GENERATOR}:{TLS_DIR}:ro"]
    env = environment(definition)
    assert all(key.startswith("ELECTION_DAEMON_") for key in env)
    assert {env["ELECTION_DAEMON_TLS_CERT"], env["ELECTION_DAEMON_TLS_KEY"]} == {
        f"{TLS_DIR}/participant-a.pem",
        f"{TLS_DIR}/participant-a-key.pem",
    }
    # Loaded for real, the files being those the generator writes: TLS on, host names checked.
    command = [unescape(str(word)) for word in definition["command"]]
    config = load_daemon_config(command, tls_daemon_environment(definition, generated))
    assert config.servers == tuple((host, SECURE_CLIENT_PORT) for host in TLS_ZOOKEEPERS)
    assert config.identity == name
    assert config.tls_context is not None and config.tls_context.check_hostname
    assert config.path != daemon_config(plain).path
    tick_s = int(environment(service(compose, "zoo1-tls"))["ZOO_TICK_TIME"]) / 1000
    assert 2 * tick_s <= config.session_timeout_s <= 20 * tick_s


def test_a_zookeeper_server_with_the_tls_profile_lines_serves_certified_clients(
    compose: dict[str, Any], generated: Path, zk_factory: ZooKeeperFactory
) -> None:
    definition = service(compose, "zoo1-tls")
    with socket.socket() as probe:  # a free port instead of 2281
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    extra = {key: value.replace(TLS_DIR, str(generated)) for key, value in cfg_extra(definition).items()} | {
        "secureClientPort": str(port),
        "secureClientPortAddress": "127.0.0.1",
    }
    zk_factory(extra_config=tuple(f"{key}={value}" for key, value in extra.items()))
    # The healthcheck, as the container runs it.
    check = definition["healthcheck"]["test"]
    assert check[:3] == ["CMD", "bash", "-c"]
    command = check[3].replace(TLS_DIR, str(generated)).replace(f":{SECURE_CLIENT_PORT}", f":{port}")
    assert subprocess.run(["bash", "-c", command], timeout=20, check=False).returncode == 0

    def client(name: str) -> KazooClient:
        tls = {"ca": str(generated / "ca.pem"), "certfile": str(generated / f"{name}.pem")}
        return KazooClient(
            hosts=f"127.0.0.1:{port}", use_ssl=True, keyfile=str(generated / f"{name}-key.pem"), **tls
        )

    participant, operator = client("participant-a"), client("operator")
    try:
        participant.start(timeout=15)
        participant.create(
            "/demo", b"tls", acl=[make_acl("x509", "CN=participant-a,OU=demo,O=election_daemon", all=True)]
        )
        assert participant.get("/demo")[0] == b"tls"
        operator.start(timeout=15)
        with pytest.raises(NoAuthError):
            operator.get("/demo")
    finally:
        for kazoo in (participant, operator):
            kazoo.stop()
            kazoo.close()
    # A TLS daemon as the profile configures it, its server at 127.0.0.1 (in the certificate too).
    env = tls_daemon_environment(service(compose, TLS_DAEMONS[0]), generated)
    env |= {"ELECTION_DAEMON_HOSTS": f"127.0.0.1:{port}", "ELECTION_DAEMON_HTTP": "127.0.0.1:0"}
    command = [unescape(str(word)) for word in service(compose, TLS_DAEMONS[0])["command"]]
    daemon = subprocess.Popen(
        [sys.executable, "-m", "election_daemon", *command],
        env=daemon_environment() | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert daemon.stdout is not None
        events = []
        for line in daemon.stdout:
            events.append(json.loads(line)["event"] if line.startswith("{") else line)
            if events[-1] == "child_started":
                break
        assert "elected" in events, events
    finally:
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, stderr
