"""Per-call consistency: level names, presets and their resolution against N.

Rules:
- A count is an int 1..N or one of ``one two three quorum all``; anything else, or a
  count outside 1..N (R > N included), is ``InvalidArgument``: an impossible level is
  rejected before anything is sent, never silently clamped.
- ``quorum`` is ``N // 2 + 1`` for the key's N, so it means the same on every node.
- A preset (``one quorum all linearizable``) sets both R and W; explicit ``r``/``w``
  given beside a preset is a contradiction and is rejected.
- ``linearizable`` forces a strict quorum (fallbacks never count) and ABD rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvstore.errors import InvalidArgument

LEVEL_NAMES = ("one", "two", "three", "quorum", "all")
PRESETS = ("one", "quorum", "all", "linearizable")
READ_REPAIR_MODES = ("off", "async", "blocking")

Count = int | str


def quorum(n: int) -> int:
    return n // 2 + 1


def resolve_count(spec: Count, n: int, what: str = "r") -> int:
    """Turn an int or level name into a replica count for a key with ``n`` replicas."""
    if isinstance(spec, bool):
        raise InvalidArgument(f"{what} must be an integer or a level name, not a boolean")
    if isinstance(spec, int):
        count = spec
    elif isinstance(spec, str):
        name = spec.strip().lower()
        if name == "quorum":
            count = quorum(n)
        elif name == "all":
            count = n
        elif name in ("one", "two", "three"):
            count = LEVEL_NAMES.index(name) + 1
        elif name.isdigit():
            count = int(name)
        else:
            raise InvalidArgument(
                f"{what}={spec!r} is not a level: use 1..{n} or one of {', '.join(LEVEL_NAMES)}"
            )
    else:
        raise InvalidArgument(
            f"{what} must be an integer or a level name, not {type(spec).__name__}"
        )
    if not 1 <= count <= n:
        raise InvalidArgument(
            f"{what}={spec!r} needs {count} replicas but N={n}: it must be between 1 and {n}"
        )
    return count


@dataclass(frozen=True, slots=True)
class Defaults:
    """Cluster-wide defaults a call falls back on (from cluster.toml)."""

    n: int
    r: int
    w: int
    sloppy: bool
    read_repair: str
    timeout_ms: int
    max_timeout_ms: int = 60_000  # a call may not ask for longer (bounds held resources)


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What one call asked for; None means "use the cluster default"."""

    r: Count | None = None
    w: Count | None = None
    consistency: str | None = None
    sloppy: bool | None = None
    read_repair: str | None = None
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    """The options one call runs with, every field decided."""

    r: int
    w: int
    sloppy: bool
    read_repair: str
    timeout_ms: int
    linearizable: bool = False


def resolve(call: CallOptions, defaults: Defaults) -> Resolved:
    """Combine a call's options with the defaults; raise InvalidArgument when impossible."""
    n = defaults.n
    linearizable = False
    if call.consistency is not None:
        preset = call.consistency.strip().lower()
        if preset not in PRESETS:
            raise InvalidArgument(
                f"consistency={call.consistency!r} is not one of {', '.join(PRESETS)}"
            )
        if call.r is not None or call.w is not None:
            raise InvalidArgument("give either consistency= or r=/w=, not both")
        if preset == "linearizable":
            linearizable = True
            r = w = quorum(n)
        else:
            r = w = resolve_count(preset, n, "consistency")
    else:
        r = defaults.r if call.r is None else resolve_count(call.r, n, "r")
        w = defaults.w if call.w is None else resolve_count(call.w, n, "w")
    sloppy = defaults.sloppy if call.sloppy is None else call.sloppy
    if linearizable and call.sloppy:
        raise InvalidArgument("consistency='linearizable' needs a strict quorum: sloppy=True")
    if linearizable:
        sloppy = False
    read_repair = defaults.read_repair if call.read_repair is None else call.read_repair
    if read_repair not in READ_REPAIR_MODES:
        raise InvalidArgument(
            f"read_repair={read_repair!r} is not one of {', '.join(READ_REPAIR_MODES)}"
        )
    timeout_ms = defaults.timeout_ms if call.timeout_ms is None else call.timeout_ms
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise InvalidArgument(f"timeout must be a positive number of ms, got {timeout_ms!r}")
    if timeout_ms > defaults.max_timeout_ms:
        raise InvalidArgument(
            f"timeout of {timeout_ms} ms is longer than the cluster's maximum "
            f"({defaults.max_timeout_ms} ms, max_timeout_ms)"
        )
    return Resolved(r, w, sloppy, read_repair, timeout_ms, linearizable)
