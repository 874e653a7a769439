"""Generated protobuf and gRPC modules, with their .pyi stubs.

Made from proto/ by scripts/gen_proto.sh and committed, so that an install needs no code
generation; tests/packaging/test_generated.py checks they are current. Do not edit them.
"""
