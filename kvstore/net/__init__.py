"""The network seam: gRPC servicers and stubs, protobuf <-> core conversion, peer links."""
