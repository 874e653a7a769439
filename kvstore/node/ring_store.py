"""Where a node keeps its ring epoch: the ring chosen last and its vote on the next one.

Rules and invariants:
- ``save`` returns only once the state is durable, and a crash at any point leaves the
  old state or the new one, never a mix: the file is written beside its final name,
  fsync'd, renamed over it, and the directory fsync'd (the rename itself is then
  durable).
- ``load`` validates every field and raises ``RingStoreError`` naming the file and the
  field; a node never guesses a ring from a damaged file. No file means a new node.
- ``open_ring`` starts a new node at epoch 1 (the config's membership) and refuses a
  config whose membership is not the stored ring's.
- The memory store is the simulator's: it outlives a crash of the node that uses it,
  as the file does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from kvstore.config import ClusterConfig
from kvstore.core import epoch_wire as wire
from kvstore.core.epochs import AcceptorState, RingRecord
from kvstore.errors import ConfigError

FORMAT = 1
MAX_BYTES = 1 << 20


class RingStoreError(ValueError):
    """The ring file cannot be trusted; the message names the file and the problem."""


class RingStore(Protocol):
    def load(self) -> AcceptorState | None: ...

    def save(self, state: AcceptorState) -> None: ...


class MemoryRingStore:
    def __init__(self) -> None:
        self.state: AcceptorState | None = None

    def load(self) -> AcceptorState | None:
        return self.state

    def save(self, state: AcceptorState) -> None:
        self.state = state


class FileRingStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> AcceptorState | None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        if size > MAX_BYTES:
            raise RingStoreError(f"{self.path}: {size} bytes, more than a ring file holds")
        try:
            raw = json.loads(self.path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RingStoreError(f"{self.path}: not a ring file ({exc})") from None
        return decode_state(raw, str(self.path))

    def save(self, state: AcceptorState) -> None:
        data = json.dumps(encode_state(state), indent=1, sort_keys=True).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ------------------------------------------------------------------------ encoding


def encode_state(state: AcceptorState) -> dict[str, Any]:
    return {"format": FORMAT, **wire.encode_state(state)}


def decode_state(raw: Any, where: str) -> AcceptorState:
    try:
        if wire.field(raw, "format", int, where) != FORMAT:
            raise RingStoreError(f"{where}: format {raw['format']}, this kvstore reads {FORMAT}")
        return wire.decode_state(raw, where)
    except wire.WireError as exc:
        raise RingStoreError(str(exc)) from None


def configured_ring(config: ClusterConfig) -> RingRecord:
    """Epoch 1: the membership a cluster is created with."""
    return RingRecord(1, tuple((n.id, n.address) for n in config.nodes), config.n, config.vnodes)


def open_ring(
    store: RingStore, config: ClusterConfig, *, join: bool = False
) -> AcceptorState | None:
    """The node's ring state: the stored one, epoch 1 from ``config`` for a new node, or
    None for a new node that joins a running cluster (it learns the ring from it).

    The config must describe the stored ring's membership (ids, N, vnodes), or the ring a
    change under way goes to: a node that silently placed keys on a ring its peers do not
    use would lose writes, so anything else is refused (``ConfigError``). Addresses
    follow the config.
    """
    wanted = configured_ring(config)
    state = store.load()
    if state is None:
        if join:
            return None
        state = AcceptorState(wanted)
        store.save(state)
        return state
    chosen = state.chosen
    shape = (sorted(wanted.ids), wanted.n, wanted.vnodes)
    rings = [(sorted(chosen.ids), chosen.n, chosen.vnodes)]
    if chosen.target is not None:
        rings.append((sorted(chosen.target_ids), chosen.n, chosen.vnodes))
    if shape not in rings:
        raise ConfigError(
            f"{config.source or 'the config'}: its nodes ({', '.join(wanted.ids)}, N={wanted.n}, "
            f"vnodes={wanted.vnodes}) are not the ring this node serves (epoch {chosen.epoch}: "
            f"{', '.join(chosen.ids)}, N={chosen.n}, vnodes={chosen.vnodes}); membership "
            f"changes through `kvstore cluster apply`, never by editing the config under a "
            f"running cluster (a new cluster needs empty data directories)"
        )
    addresses = dict(wanted.members)
    if any(addresses.get(m, a) != a for m, a in chosen.everyone()):

        def moved(
            members: tuple[tuple[str, str], ...] | None,
        ) -> tuple[tuple[str, str], ...] | None:
            return None if members is None else tuple((m, addresses.get(m, a)) for m, a in members)

        ring = RingRecord(
            chosen.epoch, moved(chosen.members) or (), chosen.n, chosen.vnodes,
            moved(chosen.target), chosen.phase,
        )  # fmt: skip
        state = AcceptorState(ring, state.promised, state.accepted)
        store.save(state)
    return state
