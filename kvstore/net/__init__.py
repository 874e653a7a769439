"""The network seam: channels, peer links, replica-stream codec, protobuf <-> core
conversion, error <-> gRPC status mapping.

Below ``kvstore.node`` and ``kvstore.server``: imports neither (the gRPC servicers live in
``kvstore.server``).
"""
