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
from kvstore.core.epochs import AcceptorState, Ballot, RingRecord
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


def encode_ring(ring: RingRecord) -> dict[str, Any]:
    return {
        "epoch": ring.epoch,
        "members": [{"id": m, "address": a} for m, a in ring.members],
        "n": ring.n,
        "vnodes": ring.vnodes,
        "target": None
        if ring.target is None
        else [{"id": m, "address": a} for m, a in ring.target],
        "phase": ring.phase,
    }


def encode_state(state: AcceptorState) -> dict[str, Any]:
    accepted = state.accepted
    return {
        "format": FORMAT,
        "chosen": encode_ring(state.chosen),
        "promised": list(state.promised),
        "accepted": None
        if accepted is None
        else {"ballot": list(accepted[0]), "ring": encode_ring(accepted[1])},
    }


def _field(raw: Any, name: str, kind: type, where: str) -> Any:
    if not isinstance(raw, dict) or name not in raw:
        raise RingStoreError(f"{where}: missing {name!r}")
    value = raw[name]
    if kind is int and (type(value) is not int or value < 0):
        raise RingStoreError(f"{where}: {name!r} must be a non-negative integer")
    if kind is not int and not isinstance(value, kind):
        raise RingStoreError(f"{where}: {name!r} must be a {kind.__name__}")
    return value


def _members(raw: Any, where: str, name: str) -> tuple[tuple[str, str], ...]:
    members = []
    for i, m in enumerate(_field(raw, name, list, where)):
        at = f"{where} {name}[{i}]"
        members.append((_field(m, "id", str, at), _field(m, "address", str, at)))
    return tuple(members)


def decode_ring(raw: Any, where: str) -> RingRecord:
    target = None if raw.get("target") is None else _members(raw, where, "target")
    try:
        return RingRecord(
            _field(raw, "epoch", int, where),
            _members(raw, where, "members"),
            _field(raw, "n", int, where),
            _field(raw, "vnodes", int, where),
            target,
            _field(raw, "phase", str, where),
        )
    except ValueError as exc:
        raise RingStoreError(f"{where}: {exc}") from None


def _ballot(raw: Any, where: str) -> Ballot:
    if not (
        isinstance(raw, list)
        and len(raw) == 2
        and type(raw[0]) is int
        and raw[0] >= 0
        and isinstance(raw[1], str)
    ):
        raise RingStoreError(f"{where}: a ballot is [round, proposer]")
    return Ballot(raw[0], raw[1])


def decode_state(raw: Any, where: str) -> AcceptorState:
    if _field(raw, "format", int, where) != FORMAT:
        raise RingStoreError(f"{where}: format {raw['format']}, this kvstore reads {FORMAT}")
    chosen = decode_ring(_field(raw, "chosen", dict, where), f"{where} chosen")
    promised = _ballot(raw.get("promised"), f"{where} promised")
    accepted_raw = raw.get("accepted")
    accepted = None
    if accepted_raw is not None:
        at = f"{where} accepted"
        ballot = _ballot(_field(accepted_raw, "ballot", list, at), at)
        ring = decode_ring(_field(accepted_raw, "ring", dict, at), at)
        if ring.epoch != chosen.epoch + 1:
            raise RingStoreError(f"{at}: a vote for epoch {ring.epoch} after {chosen.epoch}")
        accepted = (ballot, ring)
    return AcceptorState(chosen, promised, accepted)


def configured_ring(config: ClusterConfig) -> RingRecord:
    """Epoch 1: the membership a cluster is created with."""
    return RingRecord(1, tuple((n.id, n.address) for n in config.nodes), config.n, config.vnodes)


def open_ring(store: RingStore, config: ClusterConfig) -> AcceptorState:
    """The node's ring state: the stored one, or epoch 1 from ``config`` for a new node.

    The config must describe the stored ring's membership (ids, N, vnodes): a node that
    silently placed keys on a ring its peers do not use would lose writes, so a
    difference is refused (``ConfigError``). Addresses follow the config.
    """
    wanted = configured_ring(config)
    state = store.load()
    if state is None:
        state = AcceptorState(wanted)
        store.save(state)
        return state
    chosen = state.chosen
    if (sorted(chosen.ids), chosen.n, chosen.vnodes) != (
        sorted(wanted.ids),
        wanted.n,
        wanted.vnodes,
    ):
        raise ConfigError(
            f"{config.source or 'the config'}: its nodes ({', '.join(wanted.ids)}, N={wanted.n}, "
            f"vnodes={wanted.vnodes}) are not the ring this node serves (epoch {chosen.epoch}: "
            f"{', '.join(chosen.ids)}, N={chosen.n}, vnodes={chosen.vnodes}); membership "
            f"changes through `kvstore cluster plan`, never by editing the config under a "
            f"running cluster (a new cluster needs empty data directories)"
        )
    addresses = dict(wanted.members)
    if any(addresses[m] != a for m, a in chosen.members):
        moved = RingRecord(
            chosen.epoch,
            tuple((m, addresses[m]) for m, _ in chosen.members),
            chosen.n,
            chosen.vnodes,
        )
        state = AcceptorState(moved, state.promised, state.accepted)
        store.save(state)
    return state
