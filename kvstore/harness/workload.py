"""Workload generators: what the clients do, op by op.

Rules: a generator is deterministic for a given seed; every write value is unique per
key (a global counter), so staleness and lost writes can be traced to one write.
``register`` overwrites a few keys (linearizability, staleness); ``deletes`` does the same
and also deletes them (a delete writes a tombstone: a read after it sees nothing, and a
value older than it coming back is a resurrected delete); ``set`` writes every value to a
fresh key once and reads recent ones back (Jepsen's set test): at the end, every
acknowledged write must still be there, which makes lost acknowledged writes visible even
when no read happened to miss them.
Workloads the store cannot run (cas-register: the store has no compare-and-set) are
refused with a message that says why.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORKLOADS = ("register", "deletes", "set")


@dataclass(frozen=True, slots=True)
class Op:
    f: str  # "read" | "write" | "delete"
    key: str
    value: int | None


class RegisterWorkload:
    """Reads and writes of unique integers over a few keys (Jepsen's register test)."""

    def __init__(self, keys: int, seed: int, read_fraction: float = 0.5) -> None:
        if keys < 1:
            raise ValueError("the workload needs at least one key")
        self.keys = [f"r{i}" for i in range(keys)]
        self.rng = random.Random(seed)
        self.read_fraction = read_fraction
        self.next_value = 1

    def final_keys(self) -> list[str]:
        """The keys to read at the end of a run."""
        return list(self.keys)

    def next_op(self) -> Op:
        key = self.rng.choice(self.keys)
        if self.rng.random() < self.read_fraction:
            return Op("read", key, None)
        value = self.next_value
        self.next_value += 1
        return Op("write", key, value)


class DeletesWorkload(RegisterWorkload):
    """Reads, writes and deletes over a few keys: a fifth of the updates are deletes."""

    def __init__(self, keys: int, seed: int, read_fraction: float = 0.5) -> None:
        super().__init__(keys, seed, read_fraction)
        self.delete_fraction = 0.2

    def next_op(self) -> Op:
        op = super().next_op()
        if op.f == "write" and self.rng.random() < self.delete_fraction:
            return Op("delete", op.key, None)
        return op


class SetWorkload(RegisterWorkload):
    """Each write goes to a new key ``s<n>``; reads pick among the last ``keys`` written."""

    def __init__(self, keys: int, seed: int, read_fraction: float = 0.5) -> None:
        super().__init__(keys, seed, read_fraction)
        self.written: list[str] = []

    def final_keys(self) -> list[str]:
        return list(self.written)

    def next_op(self) -> Op:
        if self.written and self.rng.random() < self.read_fraction:
            return Op("read", self.rng.choice(self.written[-len(self.keys) :]), None)
        value = self.next_value
        self.next_value += 1
        key = f"s{value}"
        self.written.append(key)
        return Op("write", key, value)


def make_workload(name: str, keys: int, seed: int) -> RegisterWorkload:
    if name == "register":
        return RegisterWorkload(keys, seed)
    if name == "set":
        return SetWorkload(keys, seed)
    if name == "deletes":
        return DeletesWorkload(keys, seed)
    if name == "cas-register":
        raise ValueError(
            "workload 'cas-register' needs compare-and-set, which this store does not offer "
            "(last-writer-wins registers only); use --workload register"
        )
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
