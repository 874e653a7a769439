#!/usr/bin/env bash
# Sets everything up from a fresh clone: a virtual environment in .venv, and the package
# (editable) with its dev tools installed into it. Idempotent. The gRPC code generated from
# proto/ is committed (kvstore/pb/); scripts/gen_proto.sh regenerates it after a change, and
# setup does not, so that tests/packaging/test_generated.py sees what git holds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch "$stamp"
fi
# Real network partitions (kvstore.cluster.netns) need iptables; as root with apt-get we
# install it, elsewhere the harness uses the gRPC-seam faults and those tests skip.
if [ "$(id -u)" = 0 ] && ! command -v iptables >/dev/null && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq iptables iproute2) >/dev/null 2>&1 \
    || echo "setup: could not install iptables; real network partitions stay off" >&2
fi
