"""protobuf <-> core conversion for the client API.

Rules: unset protobuf fields (0, "", absent optional) mean "use the cluster default"
and become None; everything else is passed through for ``core.consistency.resolve`` to
validate, so the wire and the Python client reject the same things the same way.
"""

from __future__ import annotations

from kvstore.core.consistency import CallOptions
from kvstore.core.version import Timestamp
from kvstore.pb import kvstore_pb2 as pb


def options_from_pb(options: pb.Options) -> CallOptions:
    r: int | str | None = options.r or (options.r_level or None)
    w: int | str | None = options.w or (options.w_level or None)
    return CallOptions(
        r=r,
        w=w,
        consistency=options.consistency or None,
        sloppy=options.sloppy if options.HasField("sloppy") else None,
        read_repair=options.read_repair or None,
        timeout_ms=options.timeout_ms or None,
    )


def options_to_pb(
    *,
    r: int | str | None,
    w: int | str | None,
    consistency: str | None,
    sloppy: bool | None,
    read_repair: str | None,
    timeout_ms: int | None,
    trace: bool,
) -> pb.Options:
    options = pb.Options(trace=trace)
    if isinstance(r, int):
        options.r = r
    elif r is not None:
        options.r_level = r
    if isinstance(w, int):
        options.w = w
    elif w is not None:
        options.w_level = w
    if consistency is not None:
        options.consistency = consistency
    if sloppy is not None:
        options.sloppy = sloppy
    if read_repair is not None:
        options.read_repair = read_repair
    if timeout_ms is not None:
        options.timeout_ms = timeout_ms
    return options


def ts_to_pb(ts: Timestamp) -> pb.Timestamp:
    return pb.Timestamp(wall=ts.wall, logical=ts.logical, node=ts.node)


def ts_from_pb(ts: pb.Timestamp) -> Timestamp:
    return Timestamp(ts.wall, ts.logical, ts.node)
