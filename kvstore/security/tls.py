"""gRPC credentials from certificate files, checked before use with a one-line reason.

Rules and invariants:
- ``TLSFiles`` is a CA (or a bundle of CAs, while one is rotated out), a certificate and
  its key. ``check`` reads and verifies them before any connection is tried (present,
  readable, PEM, not expired, issued by a CA of the bundle that is itself still valid,
  key matching the certificate), so an operator's mistake surfaces as one
  ``ConfigError`` line naming the file, not as a handshake failure on every call.
- Servers require a client certificate issued by the CA (mutual TLS); channels verify
  the server against the CA and, when dialling a known node, that its certificate names
  that node (``ssl_target_name_override``), whatever address it is reached at.
- ``None`` as files means plaintext: the explicit opt-out, decided by the caller.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kvstore.config import ClusterConfig
from kvstore.errors import ConfigError
from kvstore.security import certs
from kvstore.security.identity import Identity, parse_subject


@dataclass(frozen=True, slots=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path

    def __post_init__(self) -> None:
        for name in ("ca", "cert", "key"):  # str paths are welcome too
            object.__setattr__(self, name, Path(getattr(self, name)))

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(ca, cert, key) bytes; raises ConfigError naming the file that is wrong."""
        out = []
        for what, path in (("CA certificate", self.ca), ("certificate", self.cert),
                           ("private key", self.key)):  # fmt: skip
            try:
                out.append(Path(path).read_bytes())
            except FileNotFoundError:
                raise ConfigError(f"{path}: no such {what} file") from None
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
        return out[0], out[1], out[2]

    def check(self) -> Identity:
        """Verify the files belong together and are valid now; returns whom they name."""
        ca_pem, cert_pem, key_pem = self.read()
        try:  # a bundle of several CAs while one is rotated out (README, "Rotation")
            cas = x509.load_pem_x509_certificates(ca_pem)
        except ValueError:
            raise ConfigError(f"{self.ca}: not a PEM certificate") from None
        cert = _load_cert(cert_pem, self.cert)
        now = datetime.datetime.now(datetime.UTC)
        if now < cert.not_valid_before_utc:
            begins = cert.not_valid_before_utc
            raise ConfigError(f"{self.cert}: not valid before {begins:%Y-%m-%d %H:%M} UTC")
        if now > cert.not_valid_after_utc:
            ended = cert.not_valid_after_utc
            raise ConfigError(f"{self.cert}: expired on {ended:%Y-%m-%d %H:%M} UTC")
        if not any(_issued_by(cert, ca) for ca in cas if ca.not_valid_after_utc >= now):
            raise ConfigError(f"{self.cert}: not issued by a valid CA in {self.ca}")
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{self.key}: not a PEM private key without a password") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise ConfigError(f"{self.key}: does not match the certificate {self.cert}")
        identity = parse_subject(cert.subject.rfc4514_string().encode())
        if identity is None:
            raise ConfigError(f"{self.cert}: its subject names no kvstore node or client")
        return identity


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _load_cert(pem: bytes, path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ConfigError(f"{path}: not a PEM certificate") from None


def node_files(config: ClusterConfig, node_id: str) -> TLSFiles | None:
    """A node's own files, or None with TLS off."""
    tls = config.tls_config
    if not tls.enabled:
        return None
    paths = certs.node_paths(tls.certs_dir, node_id)
    return TLSFiles(certs.ca_paths(tls.certs_dir).cert, paths.cert, paths.key)


def client_files(config: ClusterConfig, name: str | None = None) -> TLSFiles | None:
    """The files of the config's client (``[tls] client``, or ``name``); None: TLS off."""
    tls = config.tls_config
    if not tls.enabled:
        return None
    paths = certs.client_paths(tls.certs_dir, name or tls.client)
    return TLSFiles(certs.ca_paths(tls.certs_dir).cert, paths.cert, paths.key)


def server_credentials(files: TLSFiles) -> grpc.ServerCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(files: TLSFiles) -> grpc.ChannelCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(ca, key, cert)
