#!/usr/bin/env bash
# Generates kvstore/pb/*_pb2*.py(i) from proto/. protoc runs with the include path at
# the package root (proto/), so the generated grpc module imports its messages as
# ``kvstore.pb.kvstore_pb2`` rather than by a bare module name.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
.venv/bin/python -m grpc_tools.protoc -Iproto \
  --python_out=. --grpc_python_out=. \
  --mypy_out=. --mypy_grpc_out=. \
  --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy \
  --plugin=protoc-gen-mypy_grpc=.venv/bin/protoc-gen-mypy_grpc \
  proto/kvstore/pb/kvstore.proto
