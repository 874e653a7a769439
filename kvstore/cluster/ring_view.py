"""The ring part of ``kvstore cluster status``: the epoch each node is on, a change under
way (its phase, the token ranges it moves) and how far its streams have come.

Rules: built from the nodes' own Status replies only (nothing is guessed for a node that
did not answer); the ranges a change moves are planned from the ring record the nodes
report (``kvstore.core.rebalance``), the progress is what each receiving node counted.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from kvstore.core.rebalance import PlanRefused, RingSpec, plan


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON-ready: ``epochs`` (which nodes serve which ring) and ``change`` (or None)."""
    groups: dict[tuple[int, str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    n = vnodes = 0
    for r in rows:
        if r.get("health") != "up":
            continue
        ring = r["ring"]
        key = (ring["epoch"], ring["phase"], tuple(ring["members"]), tuple(ring["target"]))
        groups.setdefault(key, []).append(r["id"])
        n, vnodes = ring["n"], ring["vnodes"]
    epochs: list[dict[str, Any]] = [
        {"epoch": e, "phase": phase, "members": list(m), "target": list(t), "nodes": nodes}
        for (e, phase, m, t), nodes in sorted(groups.items(), reverse=True)
    ]
    newest = epochs[0] if epochs else None
    change: dict[str, Any] | None = None
    if newest is not None and newest["target"]:
        change = {"epoch": newest["epoch"], "phase": newest["phase"]}
        try:
            moving = plan(
                RingSpec(tuple(newest["members"]), n, vnodes),
                RingSpec(tuple(newest["target"]), n, vnodes),
            ).moving
            change["ranges_moving"] = len(moving)
            change["share_moving"] = round(sum(r.share for r in moving), 6)
        except PlanRefused as exc:  # a record no planner accepts: say so, do not guess
            change["ranges_moving"] = f"unknown ({exc})"
        change["streams"] = [
            {"to": r["id"], **s}
            for r in rows
            if r.get("health") == "up"
            for s in r.get("streams", [])
        ]
    return {"epochs": epochs, "change": change}


def show(view: dict[str, Any], console: Console) -> None:
    for e in view["epochs"]:
        ring = ", ".join(e["members"])
        if e["target"]:
            ring += f" -> {', '.join(e['target'])}"
        console.print(f"ring epoch {e['epoch']} ({e['phase']}: {ring}) on {', '.join(e['nodes'])}")
    if len(view["epochs"]) > 1:
        console.print("[yellow]nodes are on different epochs: the older ones learn the newest[/]")
    change = view["change"]
    if change is None:
        return
    moving = change["ranges_moving"]
    share = (
        f" ({100 * change['share_moving']:.1f}% of token space)" if "share_moving" in change else ""
    )
    console.print(
        f"change under way, phase {change['phase']}: {moving} token ranges pending{share}"
    )
    for s in change["streams"]:
        state = "done" if s["done"] else "streaming"
        console.print(
            f"  {s['source']} -> {s['to']}: {s['keys']} keys, {s['bytes']} bytes ({state}, "
            f"epoch {s['epoch']})"
        )
