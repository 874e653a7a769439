"""Workload generators: what the clients do, op by op.

Rules: a generator is deterministic for a given seed; every write value is unique per
key (a global counter), so staleness and lost writes can be traced to one write.
Workloads the store cannot run (cas-register: the store has no compare-and-set) are
refused with a message that says why.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORKLOADS = ("register",)


@dataclass(frozen=True, slots=True)
class Op:
    f: str  # "read" | "write"
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

    def next_op(self) -> Op:
        key = self.rng.choice(self.keys)
        if self.rng.random() < self.read_fraction:
            return Op("read", key, None)
        value = self.next_value
        self.next_value += 1
        return Op("write", key, value)


def make_workload(name: str, keys: int, seed: int) -> RegisterWorkload:
    if name == "register":
        return RegisterWorkload(keys, seed)
    if name == "cas-register":
        raise ValueError(
            "workload 'cas-register' needs compare-and-set, which this store does not offer "
            "(last-writer-wins registers only); use --workload register"
        )
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
