"""Certificates for a cluster: one CA, a certificate per node, one per client.

Rules and invariants:
- One folder holds a cluster's files under fixed names (as ``cockroach cert`` lays them
  out): ``ca.crt``/``ca.key``, ``node.<id>.crt``/``.key``, ``client.<name>.crt``/``.key``.
  An operator copies ``ca.crt`` and a host's own pair to that host; ``ca.key`` stays
  with whoever issues certificates.
- The subject names the holder: ``CN`` the node id or client name, ``OU`` its kind
  (``node``) or client role (``read``, ``write``, ``admin``). Node certificates may serve
  and dial (server and client auth); client certificates may only dial.
- A node certificate names its node as a DNS name (peers verify they reached *that*
  node, whatever its address) and every host it is reached at (DNS or IP).
- Private keys are written 0600 and the folder 0700, each file through a temporary file
  and a rename: a crash never leaves half a key, and an existing file is never replaced
  unless asked.
- Keys are ECDSA P-256: small, and the handshake is cheap next to RSA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kvstore.errors import ConfigError

NODE = "node"
ROLES = ("read", "write", "admin")
CA_DAYS = 3650
LEAF_DAYS = 365
ORGANIZATION = "kvstore"


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def ca_paths(folder: Path) -> Issued:
    return Issued(folder / "ca.crt", folder / "ca.key")


def node_paths(folder: Path, node_id: str) -> Issued:
    return Issued(folder / f"node.{node_id}.crt", folder / f"node.{node_id}.key")


def client_paths(folder: Path, name: str) -> Issued:
    return Issued(folder / f"client.{name}.crt", folder / f"client.{name}.key")


def _check_name(name: str, what: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
        raise ConfigError(f"{what} {name!r} must be 1-64 letters, digits, - or _")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists already (use --overwrite to replace it)")
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen a key's mode
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


def _make_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _subject(name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    paths = ca_paths(folder)
    for path in (paths.cert, paths.key):
        if not path.exists():
            raise ConfigError(f"{path}: no such file (run `kvstore certs init` first)")
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{paths.key}: not an EC private key")
    return cert, key


def init_ca(
    folder: Path, *, cluster: str = "kvstore", days: int = CA_DAYS, overwrite: bool = False
) -> Issued:
    """Make the cluster's certificate authority (``ca.crt``, ``ca.key``)."""
    _make_folder(folder)
    key = _new_key()
    name = _subject(f"{cluster} CA", "ca")
    start = _now() - datetime.timedelta(minutes=5)  # tolerate a little skew between hosts
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    paths = ca_paths(folder)
    _write(paths.key, _key_bytes(key), 0o600, overwrite=overwrite)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite=overwrite)
    return paths


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in names:
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _issue(
    folder: Path,
    paths: Issued,
    subject: x509.Name,
    usages: list[x509.ObjectIdentifier],
    san: x509.SubjectAlternativeName | None,
    *,
    days: int,
    not_before: datetime.datetime | None,
    overwrite: bool,
) -> Issued:
    ca_cert, ca_key = _load_ca(folder)
    key = _new_key()
    start = not_before or _now() - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _make_folder(folder)
    _write(paths.key, _key_bytes(key), 0o600, overwrite=overwrite)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644, overwrite=overwrite)
    return paths


def issue_node(
    folder: Path,
    node_id: str,
    hosts: Sequence[str],
    *,
    days: int = LEAF_DAYS,
    not_before: datetime.datetime | None = None,
    overwrite: bool = False,
) -> Issued:
    """A node's certificate, signed by the folder's CA, for every host it is reached at."""
    _check_name(node_id, "node id")
    return _issue(
        folder,
        node_paths(folder, node_id),
        _subject(node_id, NODE),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        _san([node_id, "localhost", *hosts]),
        days=days,
        not_before=not_before,
        overwrite=overwrite,
    )


def issue_client(
    folder: Path,
    name: str,
    role: str,
    *,
    days: int = LEAF_DAYS,
    not_before: datetime.datetime | None = None,
    overwrite: bool = False,
) -> Issued:
    """A client's certificate carrying its role (``read``, ``write`` or ``admin``)."""
    _check_name(name, "client name")
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return _issue(
        folder,
        client_paths(folder, name),
        _subject(name, role),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        None,
        days=days,
        not_before=not_before,
        overwrite=overwrite,
    )


def ensure_local(
    folder: Path, cluster: str, nodes: Sequence[tuple[str, str]], client: str = "admin"
) -> list[Path]:
    """Make whatever a local cluster lacks: the CA, each ``(node id, host)``'s certificate
    and the admin client's. Returns the files made (empty: all were there)."""
    made: list[Path] = []
    ca = ca_paths(folder)
    if not ca.cert.exists():
        init_ca(folder, cluster=cluster)
        made += [ca.cert, ca.key]
    for node_id, host in nodes:
        paths = node_paths(folder, node_id)
        if not (paths.cert.exists() and paths.key.exists()):
            issue_node(folder, node_id, [host], overwrite=True)
            made += [paths.cert, paths.key]
    paths = client_paths(folder, client)
    if not (paths.cert.exists() and paths.key.exists()):
        issue_client(folder, client, "admin", overwrite=True)
        made += [paths.cert, paths.key]
    return made


def describe(folder: Path) -> list[str]:
    """One line per certificate in ``folder``: file, whom it names, when it expires."""
    lines = []
    for path in sorted(folder.glob("*.crt")):
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            lines.append(f"{path.name}: unreadable ({exc})")
            continue
        names = {a.oid: str(a.value) for a in cert.subject}
        who = f"{names.get(NameOID.ORGANIZATIONAL_UNIT_NAME, '?')} {names.get(NameOID.COMMON_NAME)}"
        lines.append(f"{path.name}: {who}, expires {cert.not_valid_after_utc:%Y-%m-%d}")
    return lines or [f"{folder}: no certificates"]
