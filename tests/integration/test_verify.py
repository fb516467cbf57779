"""``election-daemon verify`` end to end: real ZooKeeper, daemons, register and faults, then its report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _daemons import daemon_environment

from election_daemon import Election
from election_daemon.cli.verify._runner import _local_tls
from election_daemon.daemon.exitcodes import ExitCode
from election_daemon.errors import NoAuthError
from election_daemon.library._zk import ZooKeeper
from election_daemon.library.acl import ElectionACL
from election_daemon.library.candidacy import with_step_down_request
from election_daemon.library.security import DigestAuth, read_auth_file
from election_daemon.testing import TlsFiles
from election_daemon.testing.pytest_plugin import ZooKeeperFactory


def _verify(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "election_daemon", "verify", *args],
        env=daemon_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        start_new_session=True,
    )


def _verdict(report: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((report / "verdict.json").read_text())
    return document


@pytest.mark.timeout(110)
def test_short_run_on_a_local_ensemble_passes_and_reports(tmp_path: Path) -> None:
    report = tmp_path / "report"

    result = _verify(
        "--quick",
        "--faults-from",
        "kill,pause,delete-node",
        "--seed",
        "7",
        "--report",
        str(report),
        timeout_s=100,
    )

    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    assert "verify: PASS" in result.stdout
    verdict = _verdict(report)
    assert verdict["ok"]
    assert [check["name"] for check in verdict["checks"]] == [
        "safety",
        "containment",
        "liveness",
        "no_lost_writes",
    ]
    assert sorted(fault["fault"] for fault in verdict["faults"]) == ["delete-node", "kill", "pause"]
    assert all(fault["recovery_s"] is not None for fault in verdict["faults"])
    kill = next(fault for fault in verdict["faults"] if fault["fault"] == "kill")
    assert kill["failover_s"] is not None and kill["token_after"] > kill["token_before"]
    # The paused leader's command was resumed before its daemon: its writes were refused.
    safety = next(check for check in verdict["checks"] if check["name"] == "safety")
    assert safety["metrics"]["accepted"] > 0 and safety["metrics"]["rejected"] > 0
    assert any(overlap["cause"] == "pause" and overlap["excused"] for overlap in verdict["overlaps"])
    html = (report / "report.html").read_text()
    assert "<svg" in html and "PASS" in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")
    history = [json.loads(line) for line in (report / "history.jsonl").read_text().splitlines()]
    assert {record["source"] for record in history} >= {
        "daemon",
        "workload",
        "register",
        "nemesis",
        "fleet",
        "runner",
    }
    assert [record["t"] for record in history] == sorted(record["t"] for record in history)


@pytest.mark.timeout(110)
def test_hostile_client_with_write_access_to_the_path_passes(tmp_path: Path) -> None:
    """Junk, look-alikes, a forged node, bogus requests and deletions: one leader at a time, and
    a leader again once the junk is gone."""
    report = tmp_path / "report"

    result = _verify(
        "--quick", "--faults-from", "hostile", "--seed", "11", "--report", str(report), timeout_s=100
    )

    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    assert "verify: PASS" in result.stdout
    verdict = _verdict(report)
    assert verdict["ok"]
    (fault,) = verdict["faults"]
    assert fault["fault"] == "hostile" and fault["recovery_s"] is not None
    history = [json.loads(line) for line in (report / "history.jsonl").read_text().splitlines()]
    nemesis = [record for record in history if record["source"] == "nemesis"]
    start = next(record for record in nemesis if record["event"] == "start")
    heal = next(record for record in nemesis if record["event"] == "heal")
    acts = [record for record in nemesis if record["event"] == "act"]
    assert set(start["acts"]) == {
        "junk_node", "junk_path", "look_alike", "forged_ephemeral", "foreign", "handover",
        "bad_step_down", "step_down", "delete_node",
    }  # fmt: skip
    assert sum(start["acts"].values()) == len([act for act in acts if act["result"] == "done"]) == len(acts)
    # Cleaned up: 2 look-alikes and 3 foreign contenders deleted, the path's data cleared.
    assert heal["cleanup"]["deleted"] == 5 and heal["cleanup"]["path_cleared"] == 1
    reasons = {record.get("reason") for record in history if record["event"] == "revoked"}
    assert reasons & {"step_down", "node_deleted"}, reasons


@pytest.mark.timeout(90)
def test_run_against_given_hosts_uses_only_client_side_faults(zk_hosts: str, tmp_path: Path) -> None:
    report = tmp_path / "report"

    result = _verify(
        "--hosts", zk_hosts, "--faults", "2", "--faults-from", "stop,slow", "--participants", "2",
        "--seed", "3", "--report", str(report), timeout_s=80,
    )  # fmt: skip

    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    verdict = _verdict(report)
    assert verdict["ok"]
    assert len(verdict["faults"]) == 2
    assert verdict["params"]["hosts"] == zk_hosts


@pytest.mark.timeout(110)
def test_tls_run_on_a_local_ensemble_passes(tmp_path: Path) -> None:
    """--tls: servers serving mutual TLS only and closing unauthenticated sessions; the daemons
    connect with a client certificate and a digest user, the election's only participant in its
    ACLs; hostile's step-down request is written as the ACL's operator, the deletions and junk
    writes (which no operator may do) as the super user."""
    report = tmp_path / "report"

    result = _verify(
        "--quick", "--tls", "--faults-from", "kill,delete-node,hostile", "--seed", "7",
        "--report", str(report), timeout_s=100,
    )  # fmt: skip

    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    assert "mutual TLS only, digest authentication enforced" in result.stdout
    assert "verify: PASS" in result.stdout
    verdict = _verdict(report)
    assert verdict["ok"]
    assert verdict["params"]["security"].startswith(
        "mutual TLS, digest user 'verify', ACLs: participant 'verify', operator 'operator'"
    )
    assert verdict["params"]["fault_identities"] == {
        "delete-node": "superuser",
        "delete-path": "superuser",
        "hostile": "superuser",
        "hostile.step_down": "operator",
    }
    faults = {fault["fault"]: fault for fault in verdict["faults"]}
    assert sorted(faults) == ["delete-node", "hostile", "kill"]
    assert all(fault["recovery_s"] is not None for fault in faults.values())
    history = [json.loads(line) for line in (report / "history.jsonl").read_text().splitlines()]
    nemesis = [record for record in history if record["source"] == "nemesis"]
    # The operator's deletion and the hostile client's writes were carried out, not refused.
    delete = next(r for r in nemesis if r["event"] == "start" and r["fault"] == "delete-node")
    assert not delete.get("already_gone") and delete["identity"] == "superuser"
    hostile = next(r for r in nemesis if r["event"] == "start" and r["fault"] == "hostile")
    assert hostile["identity"] == "superuser" and hostile["step_down_identity"] == "operator"
    assert "operator_session" not in hostile
    acts = [record for record in nemesis if record["event"] == "act"]
    assert acts and all(act["result"] == "done" for act in acts)
    assert {act["identity"] for act in acts if act["action"] == "step_down"} == {"operator"}
    assert {act["identity"] for act in acts if act["action"] != "step_down"} == {"superuser"}
    assert any(r["event"] == "revoked" and r.get("reason") == "node_deleted" for r in history)


def _flag(options: tuple[str, ...], name: str) -> str:
    return options[options.index(name) + 1]


@pytest.mark.timeout(90)
async def test_tls_acls_refuse_operator_actions_without_an_operator_identity(
    zk_factory: ZooKeeperFactory, tmp_path: Path
) -> None:
    """verify --tls's own security (its ensemble options, its daemons' flags and ACL): a session
    that is neither participant nor operator is refused every operator action on the election
    (NoAuthError); the operator's step-down request is carried out, its deletions refused (which
    is why verify deletes as the super user)."""
    files, superuser, security = _local_tls(tmp_path)
    ensemble = zk_factory(tls=files, enforce_auth=("digest",), plain_port=False, superuser=superuser)
    options = security.daemon_options
    participant = read_auth_file(_flag(options, "--auth-file"))
    assert security.operator_auth is not None
    (operator,) = security.operator_auth
    acl = ElectionACL(
        participants=(_flag(options, "--acl-participant"),), operators=(_flag(options, "--acl-operator"),)
    )
    assert acl.participants == (participant.acl_id(),) and acl.operators == (operator.acl_id(),)
    hosts, tls = ensemble.secure_hosts, files.client_context(files.client)
    path = "/election-daemon-verify/acl-check"
    common: dict[str, Any] = {"session_timeout_s": 2.0, "tls": tls, "auth": participant, "acl": acl}
    alpha = Election(hosts, path, identity="alpha", **common)
    beta = Election(hosts, path, identity="beta", **common)
    revoked: list[object] = []
    alpha.on_revoked(revoked.append)

    async def session(auth: DigestAuth) -> ZooKeeper:
        zk = ZooKeeper.create(hosts, chroot=None, session_timeout_s=4.0, tls=security.admin_tls, auth=(auth,))
        await zk.start(connect_timeout_s=15.0)
        return zk

    await alpha.start()
    try:
        term = await alpha.wait_for_leadership(15)
        await beta.start()
        node = alpha.node
        assert node is not None
        stranger = await session(DigestAuth("stranger", "not-in-the-acl"))
        operator_zk = await session(operator)
        try:
            raw, _ = await operator_zk.get(node)
            step_down = with_step_down_request(raw, "acl-check")
            refused: dict[str, Callable[[ZooKeeper], Awaitable[Any]]] = {
                "delete-node": lambda zk: zk.delete(node),
                "hostile junk in the path": lambda zk: zk.set(path, b'{"handover_to":"x"}'),
                "step-down": lambda zk: zk.set(node, step_down),
            }
            for action, attempt in refused.items():
                with pytest.raises(NoAuthError):
                    await attempt(stranger)
                assert not revoked, action
            # An operator may not delete a node nor write junk into the path's data ...
            with pytest.raises(NoAuthError):
                await operator_zk.delete(node)
            assert alpha.is_leader and not revoked
            # ... but may ask the leader to step down.
            await operator_zk.set(node, step_down)
            await beta.wait_for_leadership(15)
            assert revoked
            new_term = beta.term
            assert new_term is not None and new_term.token > term.token
        finally:
            await stranger.close()
            await operator_zk.close()
    finally:
        await beta.stop()
        await alpha.stop()


@pytest.mark.timeout(90)
def test_run_against_given_hosts_over_tls_with_digest_auth(
    zk_factory: ZooKeeperFactory, tls_files: TlsFiles, tmp_path: Path
) -> None:
    ensemble = zk_factory(tls=True, enforce_auth=("digest",), plain_port=False)
    auth = tmp_path / "zk-auth"
    auth.write_text("digest verifier:An0ther-Secret\n")
    auth.chmod(0o600)
    report = tmp_path / "report"

    result = _verify(
        "--hosts", ensemble.secure_hosts, "--tls-ca", str(tls_files.ca),
        "--tls-cert", str(tls_files.client.cert), "--tls-key", str(tls_files.client.key),
        "--auth-file", str(auth), "--faults", "2", "--faults-from", "stop,delete-node",
        "--participants", "2", "--seed", "5", "--report", str(report), timeout_s=80,
    )  # fmt: skip

    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    assert "An0ther-Secret" not in result.stdout + result.stderr
    verdict = _verdict(report)
    assert verdict["ok"]
    assert verdict["params"]["security"] == "TLS, digest user 'verifier'"
    assert len(verdict["faults"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--participants", "1"], "--participants: must be 2 to 9"),
        (["--ensemble", "4"], "--ensemble: must be 3 or 5"),
        (["--faults-from", "kill,meteor"], "unknown fault 'meteor'"),
        (["--hosts", "127.0.0.1:1", "--faults-from", "quorum-loss"], "quorum-loss needs a local ensemble"),
        (["--hosts", "127.0.0.1:99999"], "--hosts"),
        (["--quick", "--duration", "10"], "not allowed with argument"),
        (["--session-timeout", "0.1"], "--session-timeout: must be 1 to 60 seconds"),
        (["--seed", "x"], "invalid int value"),
        (["--tls", "--hosts", "127.0.0.1:1"], "--tls: starts a local ensemble"),
        (["--tls-ca", "/nonexistent/ca.pem"], "--tls-ca: needs --hosts"),
        (["--auth-file", "/nonexistent/auth"], "--auth-file: needs --hosts"),
        (["--hosts", "127.0.0.1:1", "--tls-ca", "/nonexistent/ca.pem"], "--tls-ca: cannot read"),
        (["--hosts", "127.0.0.1:1", "--auth-file", "/nonexistent/auth"], "--auth-file"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    result = _verify(*args, timeout_s=30)

    assert result.returncode == ExitCode.USAGE
    assert result.stdout == ""
    assert result.stderr.startswith("election-daemon: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_help_lists_the_faults() -> None:
    result = _verify("--help", timeout_s=30)

    assert result.returncode == 0
    assert (
        "zk-kill-connected" in result.stdout
        and "hostile" in result.stdout
        and "--faults-from" in result.stdout
    )
