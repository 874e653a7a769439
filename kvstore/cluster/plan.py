"""``kvstore cluster plan``: what making the running cluster match the config would move.

Rules:
- The config file is the desired membership; the current one is the newest ring the
  running nodes report (``Status.ring``), read as ``cluster apply`` reads it: nodes on an
  older epoch are shown (they are learning it). During a change the plan is that change
  (its phase is shown); a config asking for another membership is refused.
- Read-only: nothing is changed anywhere. The keys and bytes come from each streaming
  source's ``RangeStats`` (one scan of its store); a source that does not answer is
  shown as unknown, never guessed.
- Refusals (``PlanRefused`` from ``kvstore.core.rebalance``) exit 1 with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from kvstore.cluster.admin import SyncAdminClient
from kvstore.cluster.apply import GrpcNodes
from kvstore.cluster.operator import NodeCallFailed
from kvstore.config import ClusterConfig
from kvstore.core.epochs import RingRecord
from kvstore.core.rebalance import Plan, PlanRefused, Range, RingSpec, Stream, plan
from kvstore.net.channel import Dialer

console = Console()


@dataclass(frozen=True, slots=True)
class Current:
    spec: RingSpec
    epoch: int
    addresses: dict[str, str]
    answered: tuple[str, ...]  # nodes that reported this ring
    silent: tuple[str, ...]  # nodes of either membership that did not answer
    target: RingSpec | None = None  # the ring a change under way goes to
    phase: str = "stable"
    behind: tuple[str, ...] = ()  # nodes on an older epoch (they learn the newest)


def current_ring(config: ClusterConfig, dialer: Dialer) -> Current:
    """The newest ring the running nodes serve, as ``cluster apply`` reads it (nodes on
    an older epoch are learning it); PlanRefused if none answers."""
    nodes = GrpcNodes({node.id: node.address for node in config.nodes}, dialer)
    seen: dict[str, RingRecord] = {}
    silent: list[str] = []
    queue = list(nodes.addresses)
    while queue:  # members only the running ring knows (leaving nodes) are asked too
        node_id = queue.pop(0)
        try:
            record = nodes.read_ring(node_id)
        except NodeCallFailed:
            silent.append(node_id)
            continue
        if record is None:  # joining: no ring of its own yet
            continue
        seen[node_id] = record
        queue += [m for m, _ in record.everyone() if m not in nodes.addresses]
        nodes.know(record)
    if not seen:
        raise PlanRefused(
            f"no node of cluster {config.name!r} answers ({', '.join(silent)}): the plan "
            f"starts from the ring the running nodes use; start them first"
        )
    newest = max(seen.values(), key=lambda r: r.epoch)
    on_it = tuple(n for n, r in seen.items() if r.epoch == newest.epoch)
    behind = tuple(n for n, r in seen.items() if r.epoch < newest.epoch)
    target = RingSpec(newest.target_ids, newest.n, newest.vnodes) if newest.target else None
    return Current(
        RingSpec(newest.ids, newest.n, newest.vnodes), newest.epoch, nodes.addresses, on_it,
        tuple(silent), target, newest.phase, behind,
    )  # fmt: skip


def desired_ring(config: ClusterConfig) -> RingSpec:
    return RingSpec(tuple(node.id for node in config.nodes), config.n, config.vnodes)


def stream_sizes(
    the_plan: Plan, addresses: dict[str, str], dialer: Dialer
) -> dict[Stream, dict[str, int] | str]:
    """For each stream, the keys/tombstones/bytes its source holds in its ranges (or why
    they are unknown). One RangeStats call per source."""
    by_source: dict[str, list[Stream]] = {}
    streams = the_plan.streams()
    for stream in streams:
        by_source.setdefault(stream.source, []).append(stream)
    out: dict[Stream, dict[str, int] | str] = {}
    for source, own in by_source.items():
        ranges: list[Range] = sorted(
            {r.start: r for s in own for r in streams[s]}.values(), key=lambda r: r.start
        )
        try:
            with SyncAdminClient.at(addresses[source], dialer=dialer, node_id=source) as admin:
                reply = admin.range_stats([(r.start, r.end - 1) for r in ranges])
        except grpc.RpcError as exc:
            reason = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            for stream in own:
                out[stream] = f"unknown ({source}: {reason})"
            continue
        counts = {r.start: c for r, c in zip(ranges, reply.counts, strict=True)}
        for stream in own:
            total = {"keys": 0, "tombstones": 0, "bytes": 0}
            for r in streams[stream]:
                c = counts[r.start]
                total["keys"] += c.keys
                total["tombstones"] += c.tombstones
                total["bytes"] += c.bytes
            out[stream] = total
    return out


def describe(the_plan: Plan, sizes: dict[Stream, dict[str, int] | str]) -> dict[str, Any]:
    """The plan as JSON-ready data (also what the table shows)."""
    streams = the_plan.streams()
    return {
        "n": the_plan.after.n,
        "vnodes": the_plan.after.vnodes,
        "current": list(the_plan.before.members),
        "desired": list(the_plan.after.members),
        "added": list(the_plan.added),
        "removed": list(the_plan.removed),
        "dead": sorted(the_plan.dead),
        "ranges_moving": len(the_plan.moving),
        "share_moving": round(sum(r.share for r in the_plan.moving), 6),
        "streams": [
            {
                "from": stream.source,
                "to": stream.target,
                "ranges": len(ranges),
                "share": round(sum(r.share for r in ranges), 6),
                "size": sizes.get(stream, "unknown"),
            }
            for stream, ranges in streams.items()
        ],
        "cleanup": sorted({node for r in the_plan.moving for node in r.dropped}),
        "ownership": {
            node: {"before": round(b, 4), "after": round(a, 4)}
            for node, (b, a) in the_plan.ownership().items()
        },
    }


def run_plan(config: ClusterConfig, dialer: Dialer, *, dead: list[str], as_json: bool) -> int:
    try:
        current = current_ring(config, dialer)
        desired = desired_ring(config)
        if current.target is not None and sorted(current.target.members) != sorted(desired.members):
            raise PlanRefused(
                f"a change to {', '.join(current.target.members)} is under way (epoch "
                f"{current.epoch}, {current.phase}): finish it with `kvstore cluster apply` "
                f"and that membership before planning another"
            )
        the_plan = plan(current.spec, desired, dead)
    except PlanRefused as exc:
        if as_json:
            print(json.dumps({"refused": str(exc)}))
        else:
            console.print(f"[red]kvstore cluster plan: refused: {exc}[/red]")
        return 1
    sizes = stream_sizes(the_plan, current.addresses, dialer)
    report = describe(the_plan, sizes)
    report["silent"] = list(current.silent)
    report["epoch"] = current.epoch
    report["phase"] = current.phase  # not "stable": this plan is the change under way
    report["behind"] = list(current.behind)
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    _print(report, the_plan)
    return 0


def _print(report: dict[str, Any], the_plan: Plan) -> None:
    if the_plan.empty:
        console.print(
            f"nothing to do: the running ring (epoch {report['epoch']}) is the config's "
            f"({', '.join(report['current'])})"
        )
        return
    console.print(f"from the running ring, epoch {report['epoch']}: {', '.join(report['current'])}")
    if report["phase"] != "stable":
        console.print(
            f"[yellow]this change is under way ({report['phase']}): `kvstore cluster apply` "
            f"resumes it[/yellow]"
        )
    if report["behind"]:
        console.print(f"on an older epoch, learning it: {', '.join(report['behind'])}")
    console.print(
        f"[bold]add[/bold] {', '.join(report['added']) or '-'}   "
        f"[bold]remove[/bold] {', '.join(report['removed']) or '-'}"
        + (f"   (dead: {', '.join(report['dead'])})" if report["dead"] else "")
    )
    console.print(
        f"{report['ranges_moving']} token ranges change replicas "
        f"({100 * report['share_moving']:.1f}% of token space, N={report['n']})"
    )
    table = Table(title="streams")
    for column in ("from", "to", "ranges", "share of keys", "keys", "tombstones", "bytes"):
        table.add_column(column)
    for s in report["streams"]:
        size = s["size"]
        cells = (
            [str(size["keys"]), str(size["tombstones"]), _bytes(size["bytes"])]
            if isinstance(size, dict)
            else [size, "", ""]
        )
        table.add_row(s["from"], s["to"], str(s["ranges"]), f"{100 * s['share']:.1f}%", *cells)
    console.print(table)
    owners = Table(title="share of token space each node replicates")
    for column in ("node", "now", "after"):
        owners.add_column(column)
    for node, share in report["ownership"].items():
        owners.add_row(node, f"{100 * share['before']:.1f}%", f"{100 * share['after']:.1f}%")
    console.print(owners)
    if report["cleanup"]:
        console.print(
            f"afterwards {', '.join(report['cleanup'])} drop the ranges they no longer own"
        )
    new = [node for node in report["silent"] if node in report["added"]]
    other = [node for node in report["silent"] if node not in report["added"]]
    if new:
        console.print(f"not running yet (new): {', '.join(new)}")
    if other:
        console.print(f"[yellow]did not answer: {', '.join(other)}[/yellow]")


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"
