"""TLS and authentication of ZooKeeper connections: what to present and whom to trust.

- :class:`TLSConfig`: a CA bundle, an optional client certificate and key (mutual TLS; the
  certificate's subject is then the session's ``x509`` identity), host name verification on
  unless explicitly turned off; TLS 1.2 at least. Its files are checked once, when it is
  built, and :meth:`TLSConfig.context` loads them into an :class:`ssl.SSLContext`.
- :class:`DigestAuth`: digest credentials ``user:password``, sent as ``addauth digest`` after
  every (re)connection before any other request. The password never shows: not in ``repr``,
  ``str`` or a traceback's locals (the daemon's JSON tracebacks include them).
- :func:`read_auth_file`: the daemon's credentials come from a file readable by its owner
  only, one line ``digest user:password``; never from the command line or the environment.

Errors are :class:`ConfigError` naming the field (``"tls_ca"`` for the library,
``"--tls-ca"`` for the command line), one line, never holding the password.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from election_daemon.errors import ConfigError

__all__ = [
    "MAX_AUTH_FILE_BYTES",
    "MIN_TLS_VERSION",
    "DigestAuth",
    "TLSConfig",
    "check_auth",
    "check_tls",
    "read_auth_file",
]

MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2
MAX_AUTH_FILE_BYTES = 4096
_REDACTED = "<redacted>"


@dataclass(frozen=True)
class TLSConfig:
    """Where the TLS material lives; checked when an election or observer takes it (files exist,
    are readable and load).

    :param ca: PEM bundle of the CAs that may sign the servers' certificates (None: the
        system's trust store).
    :param cert: our client certificate (PEM, the chain after it; it may hold the key too).
    :param key: the certificate's private key (PEM, unencrypted); needs ``cert``.
    :param verify_hostname: check that the server's certificate names the host we dialled
        (the host of the connect string). Turning it off trusts any certificate the CA
        signed, for any host: use only when the certificates name no usable host.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    verify_hostname: bool = True

    def context(self, field: str = "tls") -> ssl.SSLContext:
        """A new client context: these CAs, this certificate, TLS 1.2 or later."""
        names = _Names.of(field)
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=None if self.ca is None else os.fspath(self.ca)
            )
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(names.ca, f"cannot load CA bundle {self.ca}: {_reason(e)}") from None
        context.minimum_version = MIN_TLS_VERSION
        context.check_hostname = self.verify_hostname
        if self.cert is not None:
            try:
                context.load_cert_chain(
                    os.fspath(self.cert),
                    None if self.key is None else os.fspath(self.key),
                    password=_no_passphrase,
                )
            except (OSError, ssl.SSLError) as e:
                where = f"{self.cert}" + ("" if self.key is None else f" and {self.key}")
                if self.key is None and "PEM" in str(e):
                    raise ConfigError(
                        names.cert,
                        f"no private key in {self.cert}: give {names.key} (or a file holding both)",
                    ) from None
                raise ConfigError(
                    names.cert, f"cannot load the client certificate and key from {where}: {_reason(e)}"
                ) from None
        return context


def _no_passphrase() -> NoReturn:
    # Without a callback, OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise ssl.SSLError("the private key is encrypted: give an unencrypted PEM key")


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        return str(e.reason or e).lower().replace("_", " ")
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


@dataclass(frozen=True)
class _Names:
    ca: str
    cert: str
    key: str
    verify: str

    @classmethod
    def of(cls, field: str) -> _Names:
        if field.startswith("--"):
            return cls("--tls-ca", "--tls-cert", "--tls-key", "--tls-no-verify-hostname")
        return cls("tls_ca", "tls_cert", "tls_key", "tls_verify_hostname")


def check_tls(
    tls: ssl.SSLContext | TLSConfig | None,
    *,
    ca: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    verify_hostname: bool = True,
    field: str = "tls",
) -> ssl.SSLContext | None:
    """The client context for ``tls`` (a context, used as is, or a :class:`TLSConfig`) or for
    the paths ``ca``, ``cert``, ``key``; None for plain connections.

    TLS is on when a context, a config, ``ca`` or ``cert`` is given. ``field`` starting with
    ``--`` makes the errors name the command line's flags.
    """
    names = _Names.of(field)
    paths_given = ca is not None or cert is not None or key is not None
    if tls is not None:
        if paths_given or not verify_hostname:
            raise ConfigError(field, "give tls or the tls_ca/tls_cert/tls_key paths, not both")
        if isinstance(tls, ssl.SSLContext):
            if not tls.minimum_version >= MIN_TLS_VERSION:  # MINIMUM_SUPPORTED is negative
                raise ConfigError(
                    field,
                    f"the context allows {tls.minimum_version.name}: set minimum_version to TLSv1_2 or later",
                )
            return tls
        if isinstance(tls, TLSConfig):
            return tls.context(field)
        raise ConfigError(field, f"must be an ssl.SSLContext or a TLSConfig, not {type(tls).__name__}")
    if key is not None and cert is None:
        raise ConfigError(names.key, f"needs {names.cert}: a key without its certificate is of no use")
    if ca is None and cert is None:
        if not verify_hostname:
            raise ConfigError(names.verify, f"needs TLS: give {names.ca}")
        return None
    config = TLSConfig(
        ca=_readable_file(names.ca, ca),
        cert=_readable_file(names.cert, cert),
        key=_readable_file(names.key, key),
        verify_hostname=bool(verify_hostname),
    )
    return config.context(field)


def _readable_file(field: str, path: str | os.PathLike[str] | None) -> Path | None:
    if path is None:
        return None
    checked = Path(path)
    try:
        info = checked.stat()
    except OSError as e:
        raise ConfigError(field, f"cannot read {checked}: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(field, f"cannot read {checked}: not a regular file")
    if not os.access(checked, os.R_OK):
        raise ConfigError(field, f"cannot read {checked}: permission denied")
    return checked


class DigestAuth:
    """Digest credentials, ``addauth digest user:password``; the password never shows.

    Build it with ``DigestAuth("alice", "secret")`` or :meth:`parse` (``"alice:secret"``).
    ZooKeeper grants the session the id ``digest:alice:<hash>``, which digest ACLs name.
    """

    __slots__ = ("_secret", "user")
    scheme = "digest"

    def __init__(self, user: str, password: str) -> None:
        if not isinstance(user, str) or not isinstance(password, str):
            raise ConfigError("auth", "the user and the password must be strings")
        if not user or ":" in user or any(c in user for c in "\r\n\0"):
            raise ConfigError("auth", "the user must be non-empty, without ':' or line breaks")
        if not password or any(c in password for c in "\r\n\0"):
            raise ConfigError("auth", "the password must be non-empty, on one line")
        self.user = user
        self._secret = f"{user}:{password}".encode()

    @classmethod
    def parse(cls, credentials: str, field: str = "auth") -> DigestAuth:
        """``"user:password"``."""
        user, colon, password = credentials.partition(":")
        if not colon:
            raise ConfigError(field, "digest credentials must be user:password")
        try:
            return cls(user, password)
        except ConfigError as e:
            raise ConfigError(field, e.message) from None

    def wire(self) -> bytes:
        """The ``auth`` field of the request: ``user:password`` in UTF-8."""
        return self._secret

    def acl_id(self) -> str:
        """The id ZooKeeper grants a session with these credentials: ``digest:user:<hash>``
        (base64 of the SHA-1 of ``user:password``), which ACLs name."""
        digest = base64.b64encode(hashlib.sha1(self._secret).digest()).decode()
        return f"digest:{self.user}:{digest}"

    def __repr__(self) -> str:
        return f"DigestAuth(user={self.user!r}, password={_REDACTED})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DigestAuth) and other._secret == self._secret

    def __hash__(self) -> int:
        return hash((DigestAuth, self._secret))

    def __reduce__(self) -> NoReturn:
        raise TypeError("DigestAuth is not picklable: it holds a password")


def check_auth(auth: DigestAuth | str | None, field: str = "auth") -> tuple[DigestAuth, ...]:
    """The credentials to send after each connection: none, or one :class:`DigestAuth`."""
    if auth is None:
        return ()
    if isinstance(auth, DigestAuth):
        return (auth,)
    if isinstance(auth, str):
        return (DigestAuth.parse(auth, field),)
    raise ConfigError(field, f"must be a DigestAuth or 'user:password', not {type(auth).__name__}")


def read_auth_file(path: str | os.PathLike[str], field: str = "--auth-file") -> DigestAuth:
    """The credentials in ``path``: a regular file, readable by its owner only (mode & 0o077 == 0),
    holding one line ``digest user:password`` (blank lines and ``#`` comments ignored).

    Opened without following a FIFO's block; the message of an error never quotes the file.
    """
    where = Path(path)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise ConfigError(field, f"cannot read {where}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(field, f"cannot read {where}: not a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(
                field,
                f"{where} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"it holds a password: chmod 600 {where}",
            )
        if info.st_size > MAX_AUTH_FILE_BYTES:
            raise ConfigError(field, f"{where} is {info.st_size} bytes, more than {MAX_AUTH_FILE_BYTES}")
        return _parse_auth_file(os.read(fd, MAX_AUTH_FILE_BYTES + 1), where, field)
    finally:
        os.close(fd)


def _parse_auth_file(raw: bytes, where: Path, field: str) -> DigestAuth:
    try:
        lines = [line.strip() for line in raw.decode("utf-8").splitlines()]
    except UnicodeDecodeError:
        raise ConfigError(field, f"{where} is not UTF-8") from None
    entries = [line for line in lines if line and not line.startswith("#")]
    if len(entries) != 1:
        raise ConfigError(
            field, f"{where} must hold one line 'digest user:password', found {len(entries)} lines"
        )
    scheme, _, credentials = entries[0].partition(" ")
    if scheme != "digest":
        raise ConfigError(field, f"{where}: the line must start with 'digest ' (the only scheme supported)")
    try:
        return DigestAuth.parse(credentials.strip(), field)
    except ConfigError as e:
        raise ConfigError(field, f"{where}: {e.message}") from None
