"""Who is calling, from the verified certificate gRPC hands the servicer, and what they may do.

Rules and invariants:
- The identity is read from the TLS auth context (the subject of the certificate the
  handshake verified against the cluster's CA), never from metadata a caller sends.
- A certificate whose subject is not exactly ``CN=<name>,OU=<kind>,O=kvstore`` with a
  known kind and a plain name gives no identity: refused as unauthenticated.
- Permissions are a strict ladder for clients (read < write < admin); a node is a peer,
  not a client: it may open the Replica stream and nothing above it, and no client
  certificate may open the Replica stream.
- With TLS off (the explicit opt-out) every caller is ``INSECURE``, which may do
  everything a client may and speak as a peer: that is what "off" means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kvstore.errors import PermissionDenied
from kvstore.security.certs import NODE, ORGANIZATION, ROLES

# what each operation needs; "peer" is the replica protocol
READ, WRITE, ADMIN, PEER = "read", "write", "admin", "peer"
_RANK = {"read": 0, "write": 1, "admin": 2}


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    kind: str  # "node", "read", "write", "admin", or "insecure" (TLS off)

    def may(self, need: str) -> bool:
        if self.kind == "insecure":
            return True
        if need == PEER:
            return self.kind == NODE
        return self.kind in _RANK and _RANK[self.kind] >= _RANK[need]

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}" if self.kind != "insecure" else "an insecure caller"


INSECURE = Identity("", "insecure")


def require(caller: Identity, need: str, what: str) -> None:
    """Raise ``PermissionDenied`` unless ``caller`` may do ``what`` (which needs ``need``)."""
    if not caller.may(need):
        role = "a node certificate" if need == PEER else f"the {need!r} role or above"
        raise PermissionDenied(f"{caller} may not {what} (needs {role})")


_cache: dict[bytes, Identity | None] = {}


def _plain(name: str) -> bool:
    return 0 < len(name) <= 64 and name.replace("-", "").replace("_", "").isalnum()


def parse_subject(subject: bytes) -> Identity | None:
    """The identity in an RFC 2253 subject as gRPC reports it, or None if malformed."""
    try:
        text = subject.decode("ascii")
    except UnicodeDecodeError:
        return None
    if "\\" in text or "+" in text:  # escapes and multi-valued parts: not ours
        return None
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key in fields:
            return None
        fields[key] = value
    if set(fields) != {"CN", "OU", "O"} or fields["O"] != ORGANIZATION:
        return None
    name, kind = fields["CN"], fields["OU"]
    if not _plain(name) or kind not in (NODE, *ROLES):
        return None
    return Identity(name, kind)


def from_auth_context(context: Mapping[str, Iterable[bytes]]) -> Identity | None:
    """The caller's identity from ``ServicerContext.auth_context()``; None: no valid one."""
    subjects = list(context.get("x509_subject") or ())
    if len(subjects) != 1:
        return None
    subject = subjects[0]
    if subject not in _cache:
        if len(_cache) > 4096:  # a bound, not an LRU: certificates are few
            _cache.clear()
        _cache[subject] = parse_subject(subject)
    return _cache[subject]
