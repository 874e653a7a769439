"""Read resolution: the newest version among replies, and who is behind.

Invariants: the winner is the maximum by ``newer`` over the replicas that answered
(tombstones included: a delete wins over an older value); the stale list names exactly
the replicas that answered with an older version or nothing while a winner exists.
Replicas that did not answer are neither winners nor stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kvstore.core.version import Record, newer


@dataclass(frozen=True, slots=True)
class Resolution:
    winner: Record | None
    stale: tuple[str, ...]


def resolve(replies: Mapping[str, Record | None]) -> Resolution:
    winner: Record | None = None
    for record in replies.values():
        winner = newer(winner, record)
    if winner is None:
        return Resolution(None, ())
    stale = tuple(
        node for node, record in replies.items() if record is None or record.ts < winner.ts
    )
    return Resolution(winner, stale)
