"""What a real peer sends is validated like client input: a far-future timestamp is
refused (the cluster keeps writing), and malformed frames get error replies while the
stream and the node stay healthy."""

from __future__ import annotations

import itertools
import queue
from collections.abc import Iterator
from typing import Any

import grpc
import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvstore import SyncClient
from kvstore.core.peer_input import MAX_WALL
from kvstore.net import replica_codec
from kvstore.net.channel import Dialer
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from tests.security.conftest import Secure


class PeerStream:
    """A replica stream to n2, opened with n1's real certificate (a blocking stub)."""

    def __init__(self, secure: Secure) -> None:
        target = secure.config.node("n2")
        self.channel = Dialer(secure.node("n1")).sync(target.address, target.id)
        self.outgoing: queue.Queue[pb.Frame | None] = queue.Queue()
        self.replies = pb_grpc.ReplicaStub(self.channel).Stream(self._frames(), timeout=120)
        self.ids = itertools.count(1_000_000)

    def _frames(self) -> Iterator[pb.Frame]:
        while (frame := self.outgoing.get()) is not None:
            yield frame

    def send(self, payload: bytes) -> None:
        self.outgoing.put(pb.Frame(payload=payload))

    def until(self, rid: int) -> dict[int, list[Any]]:
        """Every reply up to the one for ``rid``."""
        seen: dict[int, list[Any]] = {}
        for frame in self.replies:
            for reply in replica_codec.unpack(frame.payload):
                seen[reply[0]] = reply
            if rid in seen:
                return seen
        raise AssertionError("the replica stream ended")

    def ping(self) -> list[Any]:
        rid = next(self.ids)
        self.send(replica_codec.pack([[rid, "p", "n1"]]))
        return self.until(rid)[rid]

    def close(self) -> None:
        self.outgoing.put(None)
        self.channel.close()


def test_a_far_future_timestamp_is_refused_and_the_cluster_keeps_writing(
    secure: Secure,
) -> None:
    with SyncClient.from_config(secure.config) as client:
        client.put("victim", "before", w="all")
        stream = PeerStream(secure)
        try:
            stream.send(
                replica_codec.pack([[1, "w", b"victim", b"poison", MAX_WALL, 0, "n1", None]])
            )
            reply = stream.until(1)[1]
            assert reply[1] == replica_codec.ERROR and "ahead of this node's clock" in reply[2]
        finally:
            stream.close()
        assert secure.cluster.status("n2").counters["replica.refused_clock"] >= 1
        # nothing was poisoned: writes everywhere still succeed and reads see them
        for i in range(20):
            client.put(f"after-{i}", "ok", w="all")
        client.put("victim", "after", w="all")
        assert client.get("victim", r="all") == b"after"


message = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.binary(max_size=64)
    | st.text(max_size=16)
    | st.sampled_from(["w", "r", "p", "ae.open", "ae.get", "ae.put", "ae.leaves", "n1"]),
    lambda inner: st.lists(inner, max_size=8),
    max_leaves=24,
)
frame = st.one_of(
    st.lists(message, max_size=6).map(lambda m: msgpack.packb(m, use_bin_type=True)),
    st.binary(max_size=200),
    message.map(lambda m: msgpack.packb(m, use_bin_type=True)),
)


def test_malformed_frames_get_error_replies_and_the_node_stays_healthy(secure: Secure) -> None:
    stream = PeerStream(secure)

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(frame, min_size=1, max_size=4))
    def junk_then_ping(frames: list[bytes]) -> None:
        for payload in frames:
            stream.send(payload)
        # the same stream still answers: nothing above killed it
        status, (name, _clock, _epoch), _service, _served_epoch = stream.ping()[1:]
        assert (status, name) == (replica_codec.OK, "n2")

    try:
        junk_then_ping()
    finally:
        stream.close()
    counters = secure.cluster.status("n2").counters
    assert counters["replica.malformed"] > 0
    with SyncClient.from_config(secure.config) as client:
        client.put("healthy", "yes", w="all")
        assert client.get("healthy", r="all") == b"yes"


def test_anti_entropy_ops_validate_their_arguments(secure: Secure) -> None:
    stream = PeerStream(secure)
    try:
        # ae.get with an int used to allocate bytes(int): a gigabyte for one message
        stream.send(replica_codec.pack([[1, "ae.get", 10**9], [2, "ae.get", [7]]]))
        replies = stream.until(2)
        assert replies[1][1] == replica_codec.ERROR and "list" in replies[1][2]
        assert replies[2][1] == replica_codec.ERROR and "key must be" in replies[2][2]
        stream.send(replica_codec.pack([[3, "ae.open", "s", "n1", 99, 0]]))
        assert "depth" in stream.until(3)[3][2]
        assert stream.ping()[1] == replica_codec.OK
    finally:
        stream.close()
    grpc_ok = secure.cluster.status("n2")
    assert grpc_ok.node == "n2"


def test_a_frame_over_the_message_limit_is_refused_by_grpc(secure: Secure) -> None:
    stream = PeerStream(secure)
    try:
        stream.send(b"\x00" * (8 << 20))
        try:
            stream.ping()
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        else:
            raise AssertionError("an 8 MB frame was accepted")
    finally:
        stream.close()
    assert secure.cluster.status("n2").node == "n2"
