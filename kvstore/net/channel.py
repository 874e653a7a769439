"""gRPC channel and server settings shared by peers, clients and tools; how to dial a node.

Rules:
- gRPC's default reconnect backoff grows to two minutes, which would keep a restarted
  node unreachable long after it is back; nodes and clients reconnect within a second.
- Messages are bounded by what the data limits allow, not by gRPC's generous default: a
  batch is cut at ``BATCH_LIMIT_BYTES`` but one call may carry a key and a value of the
  configured maximum, so the bound is twice the larger of the two plus framing.
- A ``Dialer`` is one identity: plaintext (TLS off) or mutual TLS with one certificate.
  Dialling a known node by id checks that the server's certificate names that node.
"""

from __future__ import annotations

import grpc

from kvstore.config import ClusterConfig
from kvstore.net.outbox import BATCH_LIMIT_BYTES
from kvstore.security.identity import Identity
from kvstore.security.tls import TLSFiles, channel_credentials, client_files, node_files

FRAMING_BYTES = 64 * 1024
DEFAULT_MAX_KEY, DEFAULT_MAX_VALUE = 1024, 1 << 20


def message_limit(
    max_key_bytes: int = DEFAULT_MAX_KEY, max_value_bytes: int = DEFAULT_MAX_VALUE
) -> int:
    """The largest gRPC message a node sends or accepts for these data limits."""
    return 2 * max(BATCH_LIMIT_BYTES, max_key_bytes + max_value_bytes) + FRAMING_BYTES


def channel_options(limit: int) -> list[tuple[str, int]]:
    return [
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.enable_retries", 0),
    ]


def server_options(limit: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.so_reuseport", 0),
        # a peer or client that stops reading cannot pin unbounded buffers on us
        ("grpc.max_concurrent_streams", 256),
    ]


SERVER_OPTIONS = server_options(message_limit())  # the benchmarks' bare echo server


class Dialer:
    """Opens channels as one identity: ``files`` None is plaintext."""

    def __init__(self, files: TLSFiles | None, limit: int | None = None) -> None:
        self.files = files
        self.options = channel_options(limit or message_limit())
        # checked here, once: a wrong file is one ConfigError line, not failing handshakes
        self.identity: Identity | None = files.check() if files is not None else None
        self._credentials = channel_credentials(files) if files is not None else None

    @classmethod
    def for_client(cls, config: ClusterConfig, name: str | None = None) -> Dialer:
        """As the config's client (``[tls] client``, or ``name``); plaintext if TLS is off."""
        limit = message_limit(config.max_key_bytes, config.max_value_bytes)
        return cls(client_files(config, name), limit)

    @classmethod
    def for_node(cls, config: ClusterConfig, node_id: str) -> Dialer:
        """As node ``node_id`` dialling its peers."""
        limit = message_limit(config.max_key_bytes, config.max_value_bytes)
        return cls(node_files(config, node_id), limit)

    @property
    def secure(self) -> bool:
        return self._credentials is not None

    def _options(self, node_id: str | None) -> list[tuple[str, int | str]]:
        options: list[tuple[str, int | str]] = list(self.options)
        if node_id is not None and self._credentials is not None:
            options.append(("grpc.ssl_target_name_override", node_id))
        return options

    def aio(self, address: str, node_id: str | None = None) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(address, options=self._options(node_id))
        return grpc.aio.secure_channel(address, self._credentials, options=self._options(node_id))

    def sync(self, address: str, node_id: str | None = None) -> grpc.Channel:
        if self._credentials is None:
            return grpc.insecure_channel(address, options=self._options(node_id))
        return grpc.secure_channel(address, self._credentials, options=self._options(node_id))


PLAINTEXT = Dialer(None)


def open_channel(address: str) -> grpc.aio.Channel:
    """A plaintext channel (TLS off, and the benchmarks' bare echo server)."""
    return PLAINTEXT.aio(address)
