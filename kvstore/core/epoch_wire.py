"""Ring epochs as plain data (maps, lists, strings, integers): what the ring file holds
and what nodes and operators send each other, validated field by field.

Rules: decoding never trusts its input; every problem raises ``WireError`` naming where
(the file, or the peer) and the field. Encoding and decoding round-trip exactly.
"""

from __future__ import annotations

from typing import Any

from kvstore.core.epochs import (
    Accept,
    Accepted,
    AcceptorState,
    Ballot,
    Behind,
    Chosen,
    Learn,
    Learned,
    Nack,
    Prepare,
    Promise,
    Reply,
    Request,
    RingRecord,
)


class WireError(ValueError):
    """Ring data that cannot be trusted; the message says where and why."""


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
        "chosen": encode_ring(state.chosen),
        "promised": list(state.promised),
        "accepted": None
        if accepted is None
        else {"ballot": list(accepted[0]), "ring": encode_ring(accepted[1])},
    }


def field(raw: Any, name: str, kind: type, where: str) -> Any:
    if not isinstance(raw, dict) or name not in raw:
        raise WireError(f"{where}: missing {name!r}")
    value = raw[name]
    if kind is int and (type(value) is not int or value < 0):
        raise WireError(f"{where}: {name!r} must be a non-negative integer")
    if kind is not int and not isinstance(value, kind):
        raise WireError(f"{where}: {name!r} must be a {kind.__name__}")
    return value


def _members(raw: Any, where: str, name: str) -> tuple[tuple[str, str], ...]:
    members = []
    for i, m in enumerate(field(raw, name, list, where)):
        at = f"{where} {name}[{i}]"
        members.append((field(m, "id", str, at), field(m, "address", str, at)))
    return tuple(members)


def decode_ring(raw: Any, where: str) -> RingRecord:
    if not isinstance(raw, dict):
        raise WireError(f"{where}: a ring is a map")
    target = None if raw.get("target") is None else _members(raw, where, "target")
    try:
        return RingRecord(
            field(raw, "epoch", int, where),
            _members(raw, where, "members"),
            field(raw, "n", int, where),
            field(raw, "vnodes", int, where),
            target,
            field(raw, "phase", str, where),
        )
    except ValueError as exc:
        raise WireError(f"{where}: {exc}") from None


def decode_ballot(raw: Any, where: str) -> Ballot:
    if not (
        isinstance(raw, list)
        and len(raw) == 2
        and type(raw[0]) is int
        and raw[0] >= 0
        and isinstance(raw[1], str)
    ):
        raise WireError(f"{where}: a ballot is [round, proposer]")
    return Ballot(raw[0], raw[1])


def decode_state(raw: Any, where: str) -> AcceptorState:
    chosen = decode_ring(field(raw, "chosen", dict, where), f"{where} chosen")
    promised = decode_ballot(raw.get("promised"), f"{where} promised")
    accepted_raw = raw.get("accepted")
    accepted = None
    if accepted_raw is not None:
        at = f"{where} accepted"
        ballot = decode_ballot(field(accepted_raw, "ballot", list, at), at)
        ring = decode_ring(field(accepted_raw, "ring", dict, at), at)
        if ring.epoch != chosen.epoch + 1:
            raise WireError(f"{at}: a vote for epoch {ring.epoch} after {chosen.epoch}")
        accepted = (ballot, ring)
    return AcceptorState(chosen, promised, accepted)


def encode_message(message: Request | Reply) -> list[Any]:
    """A Paxos message as a list: its kind, then its fields."""
    match message:
        case Prepare(epoch, ballot):
            return ["prepare", epoch, list(ballot)]
        case Accept(epoch, ballot, ring):
            return ["accept", epoch, list(ballot), encode_ring(ring)]
        case Learn(ring):
            return ["learn", encode_ring(ring)]
        case Promise(epoch, ballot, accepted):
            vote = None if accepted is None else [list(accepted[0]), encode_ring(accepted[1])]
            return ["promise", epoch, list(ballot), vote]
        case Accepted(epoch, ballot):
            return ["accepted", epoch, list(ballot)]
        case Nack(epoch, promised):
            return ["nack", epoch, list(promised)]
        case Chosen(ring):
            return ["chosen", encode_ring(ring)]
        case Behind(known):
            return ["behind", known]
        case Learned(epoch):
            return ["learned", epoch]
    raise TypeError(f"not a Paxos message: {message!r}")


_ARITY = {
    "prepare": 3, "accept": 4, "learn": 2, "promise": 4, "accepted": 3, "nack": 3,
    "chosen": 2, "behind": 2, "learned": 2,
}  # fmt: skip
REQUESTS = ("prepare", "accept", "learn")


def _epoch(raw: Any, where: str) -> int:
    if type(raw) is not int or not 0 <= raw < 1 << 62:
        raise WireError(f"{where}: an epoch is a non-negative integer")
    return raw


def decode_message(raw: Any, where: str) -> Request | Reply:
    if not isinstance(raw, list) or not raw or raw[0] not in _ARITY:
        raise WireError(f"{where}: not a Paxos message (a list starting with its kind)")
    kind = raw[0]
    if len(raw) != _ARITY[kind]:
        raise WireError(f"{where}: a {kind} message has {_ARITY[kind]} fields")
    at = f"{where} {kind}"
    if kind == "prepare":
        return Prepare(_epoch(raw[1], at), decode_ballot(raw[2], at))
    if kind == "accept":
        return Accept(_epoch(raw[1], at), decode_ballot(raw[2], at), decode_ring(raw[3], at))
    if kind == "learn":
        return Learn(decode_ring(raw[1], at))
    if kind == "promise":
        vote = raw[3]
        accepted = None
        if vote is not None:
            if not isinstance(vote, list) or len(vote) != 2:
                raise WireError(f"{at}: a vote is [ballot, ring]")
            accepted = (decode_ballot(vote[0], at), decode_ring(vote[1], at))
        return Promise(_epoch(raw[1], at), decode_ballot(raw[2], at), accepted)
    if kind == "accepted":
        return Accepted(_epoch(raw[1], at), decode_ballot(raw[2], at))
    if kind == "nack":
        return Nack(_epoch(raw[1], at), decode_ballot(raw[2], at))
    if kind == "chosen":
        return Chosen(decode_ring(raw[1], at))
    if kind == "behind":
        return Behind(_epoch(raw[1], at))
    return Learned(_epoch(raw[1], at))
