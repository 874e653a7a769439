"""Roles from the certificate: read < write < admin; the replica stream is for nodes of
the cluster only, and a node's certificate speaks for that node alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from kvstore import Client, PermissionDenied
from kvstore.net import replica_codec
from kvstore.net.channel import Dialer
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from tests.security.conftest import Secure


@pytest.mark.parametrize("transport", ["session", "unary"])
async def test_read_write_admin_ladder(secure: Secure, transport: str) -> None:
    def client(name: str) -> Client:
        return Client.from_config(
            secure.config,
            tls=secure.client(name),
            transport=transport,  # type: ignore[arg-type]
        )

    async with client("writer") as writer, client("reader") as reader:
        await writer.put(f"roles-{transport}", "v", w="all")
        assert await reader.get(f"roles-{transport}", r="all") == b"v"
        for attempt in (
            reader.put(f"roles-{transport}", "x"),
            reader.delete(f"roles-{transport}"),
        ):
            with pytest.raises(PermissionDenied, match="read 'reader' may not") as info:
                await attempt
            assert info.value.definite
        assert await reader.get(f"roles-{transport}", r="all") == b"v"  # nothing changed
        await writer.delete(f"roles-{transport}", w="all")
        assert await reader.get(f"roles-{transport}", r="all") is None


def admin_call(secure: Secure, name: str, method: str, request: object) -> grpc.RpcError | None:
    node = secure.config.nodes[0]
    dialer = Dialer(secure.client(name))
    with dialer.sync(node.address, node.id) as channel:
        try:
            getattr(pb_grpc.AdminStub(channel), method)(request, timeout=10)
        except grpc.RpcError as exc:
            return exc
    return None


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("Status", pb.Empty()),
        ("Repair", pb.RepairRequest()),
        ("ReadLocal", pb.LocalReadRequest(key=b"k")),
    ],
)
def test_admin_calls_need_the_admin_role(secure: Secure, method: str, request_: object) -> None:
    for name in ("reader", "writer"):
        error = admin_call(secure, name, method, request_)
        assert isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "admin" in (error.details() or "")
    assert admin_call(secure, "admin", method, request_) is None


def test_fault_injection_is_refused_on_a_production_node_even_for_admin(secure: Secure) -> None:
    for faults in (
        pb.Faults(drop=1.0),
        pb.Faults(clock_offset_ms=3_600_000),
        pb.Faults(lying_disk=True),
        pb.Faults(isolate_from=["n2"]),
    ):
        error = admin_call(secure, "admin", "SetFaults", faults)
        assert isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "--enable-faults" in (error.details() or "")
    status = secure.cluster.status("n1")
    assert status.tls and not status.faults_enabled


async def open_replica_stream(
    secure: Secure, files_of: str, metadata: tuple[tuple[str, str], ...] = (), *, ping: bool = True
) -> list[list[object]] | grpc.aio.AioRpcError:
    """Open n2's replica stream as ``files_of`` (a node id or a client name) and ping it;
    without ``ping`` send nothing and wait for the node to answer or refuse (a frame
    sent into a stream the node is refusing can fail on the client's side first)."""
    files = secure.node(files_of) if files_of.startswith("n") else secure.client(files_of)
    target = secure.config.node("n2")
    async with Dialer(files).aio(target.address, target.id) as channel:

        async def frames() -> AsyncIterator[pb.Frame]:
            if not ping:
                await asyncio.sleep(10)  # the node refuses long before; then we are cancelled
                return
            yield pb.Frame(payload=replica_codec.pack([[1, "p", files_of]]))

        call = pb_grpc.ReplicaStub(channel).Stream(frames(), metadata=metadata, timeout=5)
        try:
            async for frame in call:
                return replica_codec.unpack(frame.payload)
        except grpc.aio.AioRpcError as exc:
            return exc
    raise AssertionError("the stream ended without a reply or an error")


async def test_only_cluster_nodes_open_the_replica_stream(secure: Secure) -> None:
    assert isinstance(await open_replica_stream(secure, "n1"), list)
    for outsider, fragment in (("admin", "node certificate"), ("n9", "not a peer")):
        refused = await open_replica_stream(secure, outsider, ping=False)
        assert isinstance(refused, grpc.aio.AioRpcError), outsider
        assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
        assert fragment in (refused.details() or "")


async def test_a_node_certificate_cannot_speak_for_another_node(secure: Secure) -> None:
    assert isinstance(await open_replica_stream(secure, "n1", (("kv-peer", "n1"),)), list)
    refused = await open_replica_stream(secure, "n1", (("kv-peer", "n3"),), ping=False)
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "cannot speak for 'n3'" in (refused.details() or "")
    assert secure.cluster.status("n2").counters["replica.impersonation"] >= 1


def test_a_ca_signed_certificate_that_names_no_role_is_unauthenticated(secure: Secure) -> None:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from kvstore.security import certs

    paths = certs.client_paths(secure.folder, "odd")
    subject = certs._subject("odd", "root")  # signed by our CA, but no kvstore kind
    certs._issue(secure.folder, paths, subject, [ExtendedKeyUsageOID.CLIENT_AUTH], None,
                 days=1, not_before=None, overwrite=True)  # fmt: skip
    ca = certs.ca_paths(secure.folder).cert.read_bytes()
    credentials = grpc.ssl_channel_credentials(ca, paths.key.read_bytes(), paths.cert.read_bytes())
    node = secure.config.nodes[0]
    options = [("grpc.ssl_target_name_override", node.id)]
    channel = grpc.secure_channel(node.address, credentials, options=options)
    with channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.KVStub(channel).Get(pb.GetRequest(key=b"k"), timeout=5)
    error = info.value
    assert isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.UNAUTHENTICATED
    metadata = dict(error.trailing_metadata() or ())  # type: ignore[arg-type]
    assert metadata.get("kv-definite") == "1"
