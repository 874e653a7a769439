#!/usr/bin/env bash
# Regenerates kvstore/pb/*_pb2*.py(i) from proto/: run it after changing the .proto file
# or the grpcio-tools/mypy-protobuf pins, and commit the result. The generated modules are
# in git so that `pip install .`, a git URL or a wheel needs no code generation;
# tests/packaging/test_generated.py fails while they differ from what this script makes.
# protoc runs with the include path at the package root (proto/), so the generated grpc
# module imports its messages as ``kvstore.pb.kvstore_pb2`` rather than by a bare name.
#
# Usage: gen_proto.sh [OUT_DIR]   (default: the repository root, i.e. in place)
# VENV_PYTHON: the python of a venv with the dev extra (default: .venv/bin/python); the
# mypy-protobuf plugins are taken from the same bin directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root}" && cd "${1:-$root}" && pwd)
cd "$root"
py=${VENV_PYTHON:-.venv/bin/python}
bin=$(dirname "$py")
"$py" -m grpc_tools.protoc -Iproto \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
  proto/kvstore/pb/kvstore.proto
