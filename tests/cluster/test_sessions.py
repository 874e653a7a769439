"""Client sessions (``KV.Session``): many calls on one stream, same meaning as unary calls.

What must hold: both transports give the same results and the same error classes with
the same definiteness; concurrent calls really share messages; a coordinator that dies
or stops mid-flight never turns a sent call into a definite failure; a call that could
not be sent fails over to the next coordinator.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from kvstore import (
    Client,
    CoordinatorUnreachable,
    InvalidArgument,
    KVError,
    RequestTimeout,
    SyncClient,
)
from kvstore.client.session import SessionLink
from kvstore.cluster.local import LocalCluster
from kvstore.core.ring import Ring
from kvstore.net.status import from_call_error
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from kvstore.security.tls import client_files
from tests.cluster.conftest import ClusterFactory
from tests.cluster.helpers import keys_led_by


@pytest.mark.parametrize("transport", ["session", "unary"])
async def test_both_transports_give_the_same_answers(
    shared_cluster: LocalCluster, transport: str
) -> None:
    cfg = shared_cluster.config
    async with Client.from_config(cfg, transport=transport) as client:  # type: ignore[arg-type]
        key = f"transport-{transport}"
        written = await client.put(key, "v1", w="quorum", trace=True)
        primaries = Ring(cfg.node_ids, cfg.vnodes).primaries(key.encode(), cfg.n)
        # every primary is traced; at least W acked (the third may still be syncing when
        # the trace's grace ends: "no reply yet", seen on a machine busy with fsyncs)
        assert sorted(a.node for a in written.replicas) == sorted(primaries)
        acked = [a for a in written.replicas if a.ok]
        assert len(acked) >= 2 and all(
            a.ok or a.error == "no reply yet" for a in written.replicas
        ), written.replicas
        traced = await client.get(key, r="all", trace=True)
        assert traced.value == b"v1" and traced.ts == written.ts
        deleted = await client.delete(key, w="all")
        assert deleted.ts > written.ts
        assert await client.get(key, r="all") is None
        with pytest.raises(InvalidArgument, match="N=3") as info:
            await client.get(key, r=4)
        assert info.value.definite


async def test_server_side_validation_comes_back_as_the_same_class(
    shared_cluster: LocalCluster,
) -> None:
    """A client that does not know N sends R=4; the coordinator refuses it, definitely."""
    addresses = [node.address for node in shared_cluster.config.nodes]
    async with Client(addresses, tls=client_files(shared_cluster.config)) as client:
        with pytest.raises(InvalidArgument, match="N=3") as info:
            await client.get("k", r=4)
        assert info.value.definite


async def test_concurrent_calls_share_messages(shared_cluster: LocalCluster) -> None:
    node = shared_cluster.config.node_ids[0]
    keys = keys_led_by(shared_cluster, node, 200, "batched")
    async with Client.from_config(shared_cluster.config) as client:
        await asyncio.gather(*(client.put(k, k, w="quorum") for k in keys))
        session = client._sessions[node]
        assert session.calls_sent == len(keys)
        assert session.batches_sent < len(keys) / 4, (session.batches_sent, session.calls_sent)
        values = await asyncio.gather(*(client.get(k, r="quorum") for k in keys))
        assert values == [k.encode() for k in keys]


async def test_raw_session_answers_each_call_by_id(shared_cluster: LocalCluster) -> None:
    calls = [
        pb.Call(id=7, put=pb.PutRequest(key=b"raw", value=b"v", options=pb.Options(w=3))),
        pb.Call(id=8, put=pb.PutRequest(key=b"", value=b"v")),
        pb.Call(id=9, get=pb.GetRequest(key=b"raw", options=pb.Options(r=9))),
        pb.Call(id=10),  # names no operation
    ]

    async def batches() -> AsyncIterator[pb.CallBatch]:
        yield pb.CallBatch(calls=calls[:1])
        yield pb.CallBatch(calls=calls[1:])

    async with shared_cluster.aio_channel(shared_cluster.config.nodes[0].id) as channel:
        results: dict[int, pb.CallResult] = {}
        async for batch in pb_grpc.KVStub(channel).Session(batches(), timeout=10):
            results.update((r.id, r) for r in batch.results)
    assert sorted(results) == [7, 8, 9, 10]  # the stream ends once every call is answered
    assert results[7].HasField("put") and results[7].put.coordinator
    for call_id, fragment in ((8, "key must not be empty"), (9, "N=3"), (10, "no operation")):
        error = results[call_id].error
        assert (error.code, error.definite) == ("invalid_argument", True), error
        assert fragment in error.message


def test_call_errors_map_back_to_their_classes() -> None:
    error = from_call_error(pb.CallError(code="timeout", message="m", definite=False), "n1")
    assert isinstance(error, RequestTimeout) and not error.definite
    error = from_call_error(pb.CallError(code="unreachable", message="m", definite=True), "n1")
    assert isinstance(error, CoordinatorUnreachable) and error.definite
    error = from_call_error(pb.CallError(code="internal", message="boom", definite=True), "n1")
    assert type(error) is KVError and not error.definite  # unknown: never claim definite
    assert "boom" in str(error)


async def test_a_killed_coordinator_never_fails_a_sent_call_definitely(
    start_cluster: ClusterFactory,
) -> None:
    """Eight workers keep writing keys the victim coordinates while it is SIGKILLed.

    Calls in flight when it dies may have run: they must fail indefinitely. Calls made
    afterwards cannot reach it, certainly never left, and go to the next coordinator.
    """
    cluster = start_cluster()
    victim = cluster.config.node_ids[0]
    keys = keys_led_by(cluster, victim, 200, "killed")
    outcomes: list[tuple[bool, str]] = []  # (issued after the kill, outcome)
    killed = asyncio.Event()
    stop_at = 0.0
    async with Client.from_config(cluster.config, timeout=3) as client:
        await client.put(keys[0], "warm", w="quorum")  # the session is open

        async def worker(mine: list[str]) -> None:
            for key in itertools.cycle(mine):
                if killed.is_set() and time.monotonic() > stop_at:
                    return
                after = killed.is_set()
                try:
                    await client.put(key, key, w="quorum")
                except KVError as exc:
                    outcomes.append((after, "definite" if exc.definite else "indefinite"))
                else:
                    outcomes.append((after, "ok"))

        running = [asyncio.ensure_future(worker(keys[i::8])) for i in range(8)]
        await asyncio.sleep(0.3)
        cluster.kill(victim)
        killed.set()
        stop_at = time.monotonic() + 0.5
        await asyncio.gather(*running)
    assert "definite" not in {outcome for _, outcome in outcomes}, outcomes
    assert (False, "ok") in outcomes and (True, "ok") in outcomes, outcomes


async def test_a_paused_coordinator_times_out_indefinitely(start_cluster: ClusterFactory) -> None:
    cluster = start_cluster()
    victim = cluster.config.node_ids[1]
    (key,) = keys_led_by(cluster, victim, 1, "paused")
    async with Client.from_config(cluster.config) as client:
        await client.put(key, "before", w="quorum")
        cluster.pause(victim)
        try:
            began = time.monotonic()
            with pytest.raises(RequestTimeout) as info:
                await client.put(key, "during", w="quorum", timeout=0.5)
            assert not info.value.definite
            assert time.monotonic() - began < 3.0  # the client's own deadline held
        finally:
            cluster.resume(victim)
        # Once resumed it serves again (its peer links may need a moment: their connect
        # timers ran out while it was stopped).
        give_up = time.monotonic() + 10
        while True:
            try:
                await client.put(key, "after", w="quorum")
                break
            except KVError:
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.1)
        assert await client.get(key, r="quorum") == b"after"


async def test_session_link_marks_exactly_the_sent_calls_indefinite(
    start_cluster: ClusterFactory,
) -> None:
    """Below the client's failover: calls stuck in flight on a coordinator that dies may
    have run (indefinite); a call made once it is gone never left (definite)."""
    cluster = start_cluster()
    victim = cluster.config.node_ids[0]
    (key,) = keys_led_by(cluster, victim, 1, "stuck")
    ring = Ring(cluster.config.node_ids, cluster.config.vnodes)
    slow = ring.primaries(key.encode(), cluster.config.n)[1]
    channel = cluster.aio_channel(victim)
    link = SessionLink(victim, channel)
    options = pb.Options(w=3, sloppy=False, timeout_ms=5000)
    warm = pb.Call(put=pb.PutRequest(key=key.encode(), value=b"w", options=options))
    await link.call(warm, 8)  # the victim's links to its peers are open
    cluster.pause(slow)  # W=all cannot finish: the calls wait on the coordinator
    try:
        stuck = [
            asyncio.ensure_future(
                link.call(
                    pb.Call(put=pb.PutRequest(key=key.encode(), value=b"v", options=options)), 8
                )
            )
            for _ in range(20)
        ]
        await asyncio.sleep(0.5)
        assert not any(call.done() for call in stuck)
        cluster.kill(victim)
        errors = await asyncio.gather(*stuck, return_exceptions=True)
        assert all(isinstance(e, CoordinatorUnreachable) and not e.definite for e in errors), errors
        # "Once it is gone" means once gRPC says so: right after the stream broke the
        # channel may still report READY for a moment, and a call made then is written
        # into a new stream that breaks (indefinite, rightly: it was sent). Seen once in
        # CI under load.
        for _ in range(100):
            if channel.get_state() is not grpc.ChannelConnectivity.READY:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(CoordinatorUnreachable) as info:
            await link.call(pb.Call(get=pb.GetRequest(key=key.encode())), 2)
        assert info.value.definite
    finally:
        cluster.resume(slow)
        await link.close()
        await channel.close(None)


def test_a_call_made_after_its_coordinator_died_fails_over(start_cluster: ClusterFactory) -> None:
    """The blocking client runs its loop only during calls, so its session cannot notice
    a coordinator's death in between; the next call must still not be written into the
    dead stream (an indefinite error) but go, unsent, to the next coordinator."""
    cluster = start_cluster()
    victim = cluster.config.node_ids[2]
    (key,) = keys_led_by(cluster, victim, 1, "orphan")
    with SyncClient.from_config(cluster.config) as client:
        client.put(key, "v", w="all")  # the session to the victim is open
        cluster.kill(victim)
        time.sleep(0.3)  # grpc's own threads see the connection close
        assert client.get(key, r="quorum") == b"v"
        client.put(key, "w", w="quorum")
        assert client.get(key, r="quorum") == b"w"
