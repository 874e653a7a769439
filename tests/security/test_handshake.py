"""Authentication happens at the TLS handshake: no certificate, a self-signed one or an
expired one never reaches a servicer, and the client says why in one line."""

from __future__ import annotations

import grpc
import pytest

from kvstore import Client, ConfigError, CoordinatorUnreachable, SyncClient
from kvstore.pb import kvstore_pb2 as pb
from kvstore.pb import kvstore_pb2_grpc as pb_grpc
from kvstore.security import certs
from tests.security.conftest import Secure


def echo_with(secure: Secure, credentials: grpc.ChannelCredentials) -> grpc.RpcError | None:
    node = secure.config.nodes[0]
    options = [("grpc.ssl_target_name_override", node.id)]
    with grpc.secure_channel(node.address, credentials, options=options) as channel:
        try:
            pb_grpc.AdminStub(channel).Echo(pb.EchoMessage(payload=b"hi"), timeout=5)
        except grpc.RpcError as exc:
            return exc
    return None


def test_a_good_certificate_gets_through(secure: Secure) -> None:
    ca, cert, key = secure.client("reader").read()
    assert echo_with(secure, grpc.ssl_channel_credentials(ca, key, cert)) is None


@pytest.mark.parametrize("who", ["no certificate", "self-signed", "expired", "plaintext"])
def test_refused_at_the_handshake(secure: Secure, who: str) -> None:
    ca = certs.ca_paths(secure.folder).cert.read_bytes()
    if who == "plaintext":
        node = secure.config.nodes[0]
        with grpc.insecure_channel(node.address) as channel, pytest.raises(grpc.RpcError) as info:
            pb_grpc.AdminStub(channel).Echo(pb.EchoMessage(payload=b"hi"), timeout=5)
        error: grpc.RpcError | None = info.value
    else:
        files = {"self-signed": secure.stranger(), "expired": secure.client("expired")}
        if who == "no certificate":
            credentials = grpc.ssl_channel_credentials(ca)
        else:
            _, cert, key = files[who].read()
            credentials = grpc.ssl_channel_credentials(ca, key, cert)
        error = echo_with(secure, credentials)
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.UNAVAILABLE  # no RPC ever ran
    # and the node is fine
    assert secure.cluster.status(secure.config.nodes[0].id).node == secure.config.nodes[0].id


@pytest.mark.parametrize("transport", ["session", "unary"])
async def test_the_client_names_a_refused_certificate_in_one_line(
    secure: Secure, transport: str
) -> None:
    async with Client.from_config(
        secure.config,
        tls=secure.stranger(),
        transport=transport,  # type: ignore[arg-type]
        timeout=3,
    ) as client:
        with pytest.raises(CoordinatorUnreachable) as info:
            await client.get("k")
    assert info.value.definite  # nothing was sent: safe to retry anywhere
    message = str(info.value)
    assert "\n" not in message and "TLS" in message, message


def test_bad_files_are_refused_before_connecting(secure: Secure) -> None:
    with pytest.raises(ConfigError, match="expired on"):
        SyncClient.from_config(secure.config, tls=secure.client("expired"))
    wrong_key = secure.client("reader")
    mismatched = type(wrong_key)(wrong_key.ca, wrong_key.cert, secure.client("writer").key)
    with pytest.raises(ConfigError, match="does not match"):
        SyncClient.from_config(secure.config, tls=mismatched)
