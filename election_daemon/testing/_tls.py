"""Certificates and credentials for secured ZooKeeper servers: a test CA (trustme), client and
server certificates as PEM files, digest ACL ids.

ZooKeeper's PEM loader (``ssl.keyStore.type=PEM``) reads a key store file holding the private
key, as unencrypted PKCS#8 (``BEGIN PRIVATE KEY``), and the certificate chain; a trust store
file holds CA certificates. Every file written here suits it and Python's :mod:`ssl` alike.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trustme

__all__ = ["CertKey", "TlsFiles", "digest_id", "make_tls_files"]

_ORGANIZATION = "election_daemon"
_UNIT = "tests"


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key, as PEM files.

    ``cert`` holds the certificate, then the chain to the CA; ``key`` the PKCS#8 private key;
    ``keystore`` both (the key first), the form of ZooKeeper's PEM key store and of
    :meth:`ssl.SSLContext.load_cert_chain` with one file. ``subject`` is the certificate's
    subject as an RFC 2253 string, which is the id ZooKeeper's X509 authentication provider
    gives a client presenting it: ACL ``x509:<subject>`` grants that client access.
    """

    cert: Path
    key: Path
    keystore: Path
    subject: str

    @property
    def x509_id(self) -> str:
        """The id of an ``x509`` ACL entry for this certificate (its subject)."""
        return self.subject


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and certificates issued by it (and by a foreign CA), written to ``directory``.

    - ``ca``: the CA certificate (``ca.pem``), the trust store of servers and clients.
    - ``server``: for ``127.0.0.1`` and ``localhost``.
    - ``client``: a client certificate, subject ``CN=participant-a,OU=tests,O=election_daemon``.
    - ``operator``: another client, ``CN=operator,...``.
    - ``foreign_client``: a client certificate from another CA (``foreign_ca``), which servers
      trusting ``ca`` refuse.
    - ``expired_client``: from ``ca``, but expired a year ago.
    - ``wrong_host_server``: a server certificate from ``ca`` for ``wrong.example.invalid``
      only: clients that check host names refuse a server presenting it on 127.0.0.1.
    """

    directory: Path
    ca: Path
    foreign_ca: Path
    server: CertKey
    client: CertKey
    operator: CertKey
    foreign_client: CertKey
    expired_client: CertKey
    wrong_host_server: CertKey

    def client_context(self, cert: CertKey | None = None, *, check_hostname: bool = True) -> ssl.SSLContext:
        """A client :class:`ssl.SSLContext` trusting ``ca``, presenting ``cert`` (None: no certificate)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = check_hostname
        if cert is not None:
            context.load_cert_chain(cert.cert, cert.key)
        return context


def digest_id(user: str, password: str) -> str:
    """The id of a ``digest`` ACL entry for ``user:password``: ``user:base64(sha1(user:password))``.

    The same string, with ``super`` as the user, is what the JVM option
    ``-Dzookeeper.DigestAuthenticationProvider.superDigest`` takes; clients authenticate with
    ``addauth digest user:password``.
    """
    sha1 = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(sha1).decode('ascii')}"


def make_tls_files(
    directory: str | Path, *, hostnames: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> TlsFiles:
    """Generate a CA and the certificates of :class:`TlsFiles` into ``directory`` (created)."""
    import trustme  # a test dependency: imported only by those who ask for certificates

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name=_ORGANIZATION, organization_unit_name="test CA")
    foreign = trustme.CA(organization_name="elsewhere", organization_unit_name="foreign CA")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    foreign.cert_pem.write_to_path(str(root / "foreign-ca.pem"))
    now = datetime.datetime.now(datetime.UTC)

    def issue(
        name: str,
        authority: trustme.CA,
        *identities: str,
        common_name: str | None = None,
        not_after: datetime.datetime | None = None,
    ) -> CertKey:
        # Java cannot parse a certificate whose subjectAltName extension is empty (trustme writes
        # one even with no identities), so client certificates get a host name that is never used.
        leaf = authority.issue_cert(
            *identities,
            common_name=common_name,
            organization_name=_ORGANIZATION,
            organization_unit_name=_UNIT,
            not_after=not_after,
        )
        return _write(root, name, leaf)

    return TlsFiles(
        directory=root,
        ca=root / "ca.pem",
        foreign_ca=root / "foreign-ca.pem",
        server=issue("server", ca, *hostnames, common_name="zookeeper"),
        client=issue("client", ca, "participant-a.clients.invalid", common_name="participant-a"),
        operator=issue("operator", ca, "operator.clients.invalid", common_name="operator"),
        foreign_client=issue(
            "foreign-client", foreign, "participant-a.clients.invalid", common_name="participant-a"
        ),
        expired_client=issue(
            "expired-client",
            ca,
            "participant-a.clients.invalid",
            common_name="participant-a",
            not_after=now - datetime.timedelta(days=365),
        ),
        wrong_host_server=issue("wrong-host-server", ca, "wrong.example.invalid", common_name="zookeeper"),
    )


def _write(root: Path, name: str, leaf: trustme.LeafCert) -> CertKey:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key_pem = leaf.private_key_pem.bytes()
    chain = [blob.bytes() for blob in leaf.cert_chain_pems]
    # trustme writes the key as "BEGIN EC PRIVATE KEY" (SEC 1); ZooKeeper's PEM reader takes PKCS#8.
    pkcs8 = serialization.load_pem_private_key(key_pem, password=None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_path, key_path, keystore_path = (
        root / f"{name}.pem",
        root / f"{name}-key.pem",
        root / f"{name}-keystore.pem",
    )
    cert_path.write_bytes(b"".join(chain))
    key_path.write_bytes(pkcs8)
    keystore_path.write_bytes(pkcs8 + b"".join(chain))
    for path in (key_path, keystore_path):
        path.chmod(0o600)
    subject = x509.load_pem_x509_certificate(chain[0]).subject.rfc4514_string()
    return CertKey(cert=cert_path, key=key_path, keystore=keystore_path, subject=subject)
