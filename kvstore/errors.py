"""The error taxonomy every layer shares (DESIGN.md, "Errors: definite or indefinite").

Rules:
- Every error the store raises says whether the operation certainly did not happen
  (``definite=True``) or might have (``definite=False``). The harness records definite
  errors as ``fail`` and indefinite ones as ``info``; getting this wrong makes the
  checker give false verdicts, so no layer may guess: when unsure, indefinite.
- Each class maps to exactly one gRPC status code on the wire (``kvstore.net.status``),
  so the client can rebuild the same class from a status.
- This module is pure (no imports beyond the standard library's typing); the core uses it.
"""

from __future__ import annotations


class KVError(Exception):
    """Base of every error the store or client raises on purpose."""

    definite: bool = False
    code: str = "error"

    def __init__(self, message: str, *, definite: bool | None = None) -> None:
        super().__init__(message)
        if definite is not None:
            self.definite = definite

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class InvalidArgument(KVError, ValueError):
    """Bad key, value, consistency level or option. Nothing was sent or written."""

    definite = True
    code = "invalid_argument"


class ConfigError(KVError, ValueError):
    """A cluster config file is wrong; the message names the field and the problem."""

    definite = True
    code = "config"


class Unavailable(KVError):
    """Not enough live replicas were known before anything was sent. Nothing happened."""

    definite = True
    code = "unavailable"


class RequestTimeout(KVError):
    """The request was sent but did not complete in time: it may or may not have happened."""

    definite = False
    code = "timeout"


class QuorumFailed(KVError):
    """Fewer replicas than required acknowledged after sending: it may sit on some of them."""

    definite = False
    code = "quorum_failed"


class CoordinatorUnreachable(KVError):
    """No coordinator could be reached. Definite only if the request never left the client."""

    code = "unreachable"


class Unauthenticated(KVError):
    """No valid certificate: the handshake or the identity check refused the caller."""

    definite = True
    code = "unauthenticated"


class PermissionDenied(KVError):
    """The caller's certificate does not allow this (a role, or a node-only service)."""

    definite = True
    code = "permission_denied"


class Overloaded(KVError):
    """Refused before any work because a bound was reached (RESOURCE_EXHAUSTED): retry later."""

    definite = True
    code = "overloaded"


class CoordinatorRefused(Unavailable):
    """This coordinator will not take the call (its clock is off its peers'); nothing
    happened, and another coordinator may take it (the client tries the next one)."""

    definite = True
    code = "coordinator_refused"
