"""The ring part of ``cluster status``, from canned Status rows (one layer)."""

from __future__ import annotations

from io import StringIO
from typing import Any

from rich.console import Console

from kvstore.cluster.ring_view import show, summary

FIVE = ["n1", "n2", "n3", "n4", "n5"]


def row(node: str, epoch: int, phase: str, target: list[str], **extra: Any) -> dict[str, Any]:
    ring = {"epoch": epoch, "phase": phase, "members": FIVE, "target": target, "n": 3, "vnodes": 8}
    return {"id": node, "health": "up", "ring": ring, "streams": [], **extra}


def test_nodes_on_two_epochs_and_a_change_with_its_streams() -> None:
    rows = [
        row("n1", 3, "write-both", [*FIVE, "n6"]),
        row("n2", 2, "stable", []),
        row("n6", 3, "write-both", [*FIVE, "n6"],
            streams=[{"source": "n1", "epoch": 3, "keys": 40, "bytes": 900, "done": False}]),
        {"id": "n3", "health": "down"},
    ]  # fmt: skip
    view = summary(rows)
    assert [(e["epoch"], e["nodes"]) for e in view["epochs"]] == [(3, ["n1", "n6"]), (2, ["n2"])]
    change = view["change"]
    assert change["phase"] == "write-both" and change["ranges_moving"] > 0
    assert change["streams"] == [
        {"to": "n6", "source": "n1", "epoch": 3, "keys": 40, "bytes": 900, "done": False}
    ]
    out = StringIO()
    show(view, Console(file=out, width=200))
    text = out.getvalue()
    assert "different epochs" in text and "token ranges pending" in text
    assert "n1 -> n6: 40 keys, 900 bytes (streaming, epoch 3)" in text


def test_a_stable_ring_has_no_change() -> None:
    view = summary([row(n, 1, "stable", []) for n in FIVE])
    assert view["change"] is None and view["epochs"][0]["nodes"] == FIVE
