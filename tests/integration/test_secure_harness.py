"""The harness's secured servers: TLS, client certificates, X509 and digest authentication.

Proved with a client that speaks TLS already, kazoo, and with bare :mod:`ssl` sockets where
the exact failure matters.
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, SessionClosedRequireSaslError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import make_acl, make_digest_acl_credential

from election_daemon.errors import ConfigError
from election_daemon.testing import CertKey, TlsFiles, ZooKeeperEnsemble, digest_id, make_tls_files
from election_daemon.testing.pytest_plugin import ZooKeeperFactory

# How long a client that must be refused is given: the refusal is immediate, kazoo just retries.
REFUSED_WITHIN_S = 3.0
SUBJECT = "CN=participant-a,OU=tests,O=election_daemon"


@contextmanager
def kazoo(
    hosts: str,
    *,
    ca: Path | None = None,
    cert: CertKey | None = None,
    check_hostname: bool = True,
    auth: tuple[tuple[str, str], ...] = (),
    timeout_s: float = 15.0,
) -> Iterator[KazooClient]:
    """A started kazoo client; over TLS when ``ca`` is given, presenting ``cert`` if given."""
    tls: dict[str, object] = {}
    if ca is not None:
        tls = {"use_ssl": True, "ca": str(ca), "verify_certs": True, "check_hostname": check_hostname}
        if cert is not None:
            tls |= {"certfile": str(cert.cert), "keyfile": str(cert.key)}
    client = KazooClient(hosts=hosts, auth_data=list(auth), timeout=5.0, **tls)
    try:
        client.start(timeout=timeout_s)
        yield client
    finally:
        client.stop()
        client.close()


def refused(hosts: str, **options: object) -> None:
    """Assert that kazoo cannot get a session with these options."""
    with pytest.raises(KazooTimeoutError), kazoo(hosts, timeout_s=REFUSED_WITHIN_S, **options):  # type: ignore[arg-type]
        pass


def ruok(port: int, context: ssl.SSLContext) -> str:
    """``ruok`` over TLS: the answer, or the exception the handshake or the read ended with."""
    with (
        closing(socket.create_connection(("127.0.0.1", port), timeout=5.0)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"ruok")
        answer = b""
        while chunk := sock.recv(1024):
            answer += chunk
    return answer.decode()


def secure_port(ensemble: ZooKeeperEnsemble) -> int:
    port = ensemble.servers[0].secure_client_port
    assert port is not None
    return port


# The certificates


def test_tls_files_are_pem_files_for_zookeeper_and_python(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "certs")
    assert files.directory == tmp_path / "certs"
    for cert in (files.server, files.client, files.operator, files.foreign_client, files.expired_client):
        # ZooKeeper's PEM reader takes PKCS#8 keys only; its key store is the key, then the chain.
        assert cert.key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
        assert cert.keystore.read_text() == cert.key.read_text() + cert.cert.read_text()
        assert cert.key.stat().st_mode & 0o077 == 0
        ssl.create_default_context().load_cert_chain(cert.keystore)
    assert files.client.subject == files.client.x509_id == SUBJECT
    assert files.operator.subject == "CN=operator,OU=tests,O=election_daemon"
    server = x509.load_pem_x509_certificate(files.server.cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    expired = x509.load_pem_x509_certificate(files.expired_client.cert.read_bytes())
    assert expired.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    foreign = x509.load_pem_x509_certificate(files.foreign_client.cert.read_bytes())
    assert foreign.issuer != server.issuer
    assert files.foreign_ca.read_bytes() != files.ca.read_bytes()


def test_digest_id_is_the_acl_id_kazoo_computes() -> None:
    assert digest_id("alice", "secret") == make_digest_acl_credential("alice", "secret")
    user, hashed = digest_id("alice", "secret").split(":")
    assert user == "alice" and re.fullmatch(r"[A-Za-z0-9+/]{27}=", hashed)


def test_security_options_are_checked_before_anything_starts(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match="plain_port"):
        ZooKeeperEnsemble(plain_port=False)
    with pytest.raises(ConfigError, match="x509_auth"):
        ZooKeeperEnsemble(x509_auth=True)
    with pytest.raises(ConfigError, match="client_auth"):
        ZooKeeperEnsemble(tls=tls_files, client_auth="always")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="enforce_auth"):
        ZooKeeperEnsemble(enforce_auth=("x509",))
    with pytest.raises(ConfigError, match="enforce_auth"):
        ZooKeeperEnsemble(enforce_auth="digest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="server_cert"):
        ZooKeeperEnsemble(server_cert=tls_files.server)
    with pytest.raises(ConfigError, match="extra_config"):
        ZooKeeperEnsemble(extra_config=("secureClientPort",))


# One TLS server for the session: client certificates required, X509 authentication


@pytest.mark.timeout(60)
def test_a_client_with_a_certificate_gets_a_session_over_tls(
    zk_tls: ZooKeeperEnsemble, zk_tls_hosts: str, tls_files: TlsFiles, zk_path: str
) -> None:
    [server] = zk_tls.servers
    assert zk_tls_hosts == server.secure_address == f"127.0.0.1:{server.secure_client_port}"
    assert server.secure_client_port != server.client_port, "the plain port is kept beside"
    with kazoo(zk_tls_hosts, ca=tls_files.ca, cert=tls_files.client) as client:
        client.create(f"{zk_path}/node", b"over tls", makepath=True)
        assert client.get(f"{zk_path}/node")[0] == b"over tls"
        assert zk_tls.server_for_client_port(server.secure_client_port or 0) is server
    # The server authenticated the session as the certificate's subject.
    assert f"Authenticated Id '{SUBJECT}' for Scheme 'x509'" in server.log_path.read_text()


@pytest.mark.timeout(60)
def test_a_client_without_a_certificate_is_refused(zk_tls_hosts: str, tls_files: TlsFiles) -> None:
    refused(zk_tls_hosts, ca=tls_files.ca)


@pytest.mark.timeout(60)
def test_a_client_trusting_another_ca_refuses_the_server(
    zk_tls: ZooKeeperEnsemble, tls_files: TlsFiles
) -> None:
    refused(zk_tls.secure_hosts, ca=tls_files.foreign_ca, cert=tls_files.client)
    context = ssl.create_default_context(cafile=tls_files.foreign_ca)
    context.load_cert_chain(tls_files.client.cert, tls_files.client.key)
    with pytest.raises(ssl.SSLCertVerificationError):
        ruok(secure_port(zk_tls), context)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["foreign_client", "expired_client", None])
def test_the_server_refuses_certificates_its_ca_did_not_sign_or_that_expired(
    zk_tls: ZooKeeperEnsemble, tls_files: TlsFiles, which: str | None
) -> None:
    port = secure_port(zk_tls)
    assert ruok(port, tls_files.client_context(tls_files.client)) == "imok"
    cert = getattr(tls_files, which) if which else None
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        ruok(port, tls_files.client_context(cert))


@pytest.mark.timeout(60)
def test_an_x509_acl_admits_only_the_certificate_it_names(
    zk_tls: ZooKeeperEnsemble, zk_tls_hosts: str, tls_files: TlsFiles, zk_path: str
) -> None:
    acl = [make_acl("x509", tls_files.client.x509_id, all=True)]
    with kazoo(zk_tls_hosts, ca=tls_files.ca, cert=tls_files.client) as participant:
        participant.create(zk_path, b"mine", acl=acl, makepath=True)
        assert participant.get(zk_path)[0] == b"mine"
        assert participant.get_acls(zk_path)[0][0].id.id == SUBJECT
    with (
        kazoo(zk_tls_hosts, ca=tls_files.ca, cert=tls_files.operator) as operator,
        pytest.raises(NoAuthError),
    ):
        operator.get(zk_path)
    with kazoo(zk_tls.hosts, auth=(("digest", "alice:secret"),)) as plain, pytest.raises(NoAuthError):
        plain.get(zk_path)


@pytest.mark.timeout(60)
def test_a_digest_acl_admits_only_its_user(
    zk_tls: ZooKeeperEnsemble, tls_files: TlsFiles, zk_path: str
) -> None:
    acl = [make_acl("digest", digest_id("alice", "secret"), all=True)]
    with kazoo(zk_tls.hosts, auth=(("digest", "alice:secret"),)) as alice:
        alice.create(zk_path, b"alice's", acl=acl, makepath=True)
        assert alice.get(zk_path)[0] == b"alice's"
    for auth in ((), (("digest", "alice:wrong"),), (("digest", "bob:secret"),)):
        with kazoo(zk_tls.hosts, auth=auth) as other, pytest.raises(NoAuthError):
            other.get(zk_path)
    # Over TLS too, and the certificate's identity does not stand in for the digest user.
    with kazoo(zk_tls.secure_hosts, ca=tls_files.ca, cert=tls_files.client) as participant:
        with pytest.raises(NoAuthError):
            participant.get(zk_path)
        participant.add_auth("digest", "alice:secret")
        assert participant.get(zk_path)[0] == b"alice's"


# Servers with other options


@pytest.mark.timeout(90)
def test_enforced_authentication_closes_anonymous_sessions_and_admits_digest_and_x509(
    zk_factory: ZooKeeperFactory, tls_files: TlsFiles, zk_path: str
) -> None:
    ensemble = zk_factory(tls=True, enforce_auth=("digest", "x509"), superuser=("admin", "admin-secret"))
    config = (ensemble.servers[0].directory / "zoo.cfg").read_text()
    assert "enforce.auth.enabled=true\nenforce.auth.schemes=digest,x509\n" in config
    with kazoo(ensemble.hosts, auth=(("digest", "alice:secret"),)) as alice:
        alice.create(
            zk_path, b"x", acl=[make_acl("digest", digest_id("alice", "secret"), all=True)], makepath=True
        )
    with kazoo(ensemble.secure_hosts, ca=tls_files.ca, cert=tls_files.client) as participant:
        assert participant.exists("/") is not None
        with pytest.raises(NoAuthError):
            participant.get(zk_path)
    with kazoo(ensemble.hosts, auth=(("digest", "admin:admin-secret"),)) as admin:
        assert admin.get(zk_path)[0] == b"x", "the super user passes every ACL"
    # An anonymous session is closed at its first request (the error code says "SASL required").
    with kazoo(ensemble.hosts) as anonymous, pytest.raises(SessionClosedRequireSaslError):
        anonymous.exists("/")
    assert "does not match with any of the expected authentication scheme" in (
        ensemble.servers[0].log_path.read_text()
    )


@pytest.mark.timeout(90)
def test_a_tls_only_server_wanting_certificates(zk_factory: ZooKeeperFactory, tls_files: TlsFiles) -> None:
    ensemble = zk_factory(tls=True, plain_port=False, client_auth="want", x509_auth=True)
    [server] = ensemble.servers
    assert "clientPort=" not in (server.directory / "zoo.cfg").read_text().replace("secureClientPort=", "")
    with pytest.raises(RuntimeError, match="plain"):
        _ = ensemble.hosts
    # The harness's own four-letter words go over TLS.
    assert server.mode() == "standalone"
    assert "Zookeeper version" in server.four_letter("srvr")
    with kazoo(ensemble.secure_hosts, ca=tls_files.ca) as anonymous:
        assert anonymous.exists("/") is not None
    with kazoo(ensemble.secure_hosts, ca=tls_files.ca, cert=tls_files.client) as participant:
        participant.create("/mine", acl=[make_acl("x509", tls_files.client.x509_id, all=True)])
        assert participant.get("/mine")[0] == b""
    with kazoo(ensemble.secure_hosts, ca=tls_files.ca) as anonymous, pytest.raises(NoAuthError):
        anonymous.get("/mine")


@pytest.mark.timeout(90)
def test_a_server_certificate_for_another_host_fails_the_host_name_check(
    zk_factory: ZooKeeperFactory, tls_files: TlsFiles
) -> None:
    ensemble = zk_factory(tls=True, server_cert=tls_files.wrong_host_server, client_auth="none")
    refused(ensemble.secure_hosts, ca=tls_files.ca, check_hostname=True)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"IP address mismatch|doesn't match"):
        ruok(secure_port(ensemble), tls_files.client_context())
    with kazoo(ensemble.secure_hosts, ca=tls_files.ca, check_hostname=False) as client:
        assert client.exists("/") is not None


@pytest.mark.timeout(120)
@pytest.mark.ensemble(tls=True, x509_auth=True)
def test_a_three_server_ensemble_serves_tls_on_every_server(
    zk_ensemble: ZooKeeperEnsemble, tls_files: TlsFiles, zk_path: str
) -> None:
    addresses = zk_ensemble.secure_hosts.split(",")
    assert len(addresses) == 3 and set(addresses).isdisjoint(zk_ensemble.hosts.split(","))
    acl = [make_acl("x509", tls_files.client.x509_id, all=True)]
    with kazoo(addresses[0], ca=tls_files.ca, cert=tls_files.client) as first:
        first.create(zk_path, b"replicated", acl=acl, makepath=True)
    for address in addresses[1:]:
        with kazoo(address, ca=tls_files.ca, cert=tls_files.client) as other:
            other.sync(zk_path)
            assert other.get(zk_path)[0] == b"replicated"
        with kazoo(address, ca=tls_files.ca, cert=tls_files.operator) as operator, pytest.raises(NoAuthError):
            operator.get(zk_path)
