"""Consistent-hashing ring with virtual nodes and annotated preference lists.

Invariants:
- A key's token and every virtual node's token come from the same 64-bit hash, so every
  node and client that knows the membership computes the same preference list.
- The preference list walks clockwise from the key's token and keeps distinct nodes;
  its first N are the key's primaries, whatever their health.
- With some nodes down, each down primary is stood in for by the next healthy node
  further along the walk that is not already used: a *fallback* that names the primary
  it holds a hint for (riak_core's annotated preference list). Fallbacks only ever come
  from beyond the first N, so a primary is never its own stand-in.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Container, Sequence
from typing import NamedTuple


def token(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Replica(NamedTuple):
    node: str
    primary: bool
    hint_for: str | None = None  # a fallback's intended owner


class Ring:
    def __init__(self, node_ids: Sequence[str], vnodes: int) -> None:
        if not node_ids:
            raise ValueError("a ring needs at least one node")
        if len(set(node_ids)) != len(node_ids):
            raise ValueError("node ids must be distinct")
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        self.nodes = tuple(node_ids)
        self.vnodes = vnodes
        points = sorted(
            (token(f"{node}#{i}".encode()), node) for node in node_ids for i in range(vnodes)
        )
        self._tokens = [t for t, _ in points]
        owners = [node for _, node in points]
        # For every ring position, the distinct nodes in walk order from there: a
        # preference list becomes one bisect and one lookup instead of a walk.
        self._walks: list[tuple[str, ...]] = []
        count = len(node_ids)
        for start in range(len(points)):
            seen: list[str] = []
            i = start
            while len(seen) < count:
                node = owners[i % len(owners)]
                if node not in seen:
                    seen.append(node)
                i += 1
            self._walks.append(tuple(seen))

    def walk(self, key: bytes) -> tuple[str, ...]:
        """Every node, in the order a key's replicas are chosen."""
        i = bisect.bisect_right(self._tokens, token(key)) % len(self._tokens)
        return self._walks[i]

    def walk_at(self, key_token: int) -> tuple[str, ...]:
        """``walk`` for a key whose token is ``key_token``."""
        return self._walks[bisect.bisect_right(self._tokens, key_token) % len(self._tokens)]

    @property
    def tokens(self) -> tuple[int, ...]:
        """The virtual nodes' tokens, sorted: a key's replicas change only across one."""
        return tuple(self._tokens)

    def primaries(self, key: bytes, n: int) -> tuple[str, ...]:
        return self.walk(key)[:n]

    def replica_sets(self, n: int) -> set[tuple[str, ...]]:
        """Every distinct set of N primaries some range of the ring has (in walk order)."""
        return {walk[:n] for walk in self._walks}

    def preference_list(
        self, key: bytes, n: int, down: Container[str] = frozenset()
    ) -> list[Replica]:
        """Healthy primaries plus one fallback per down primary (while nodes remain)."""
        walk = self.walk(key)
        result: list[Replica] = []
        spare = (node for node in walk[n:] if node not in down)
        for node in walk[:n]:
            if node not in down:
                result.append(Replica(node, True))
            else:
                stand_in = next(spare, None)
                if stand_in is not None:
                    result.append(Replica(stand_in, False, node))
        return result
