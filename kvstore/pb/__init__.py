"""Generated protobuf and gRPC modules (made by scripts/gen_proto.sh; not in git)."""
