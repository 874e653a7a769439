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
# Debian tools some tests and benchmarks use, installed as root with apt-get; elsewhere
# those tests skip and say why:
# - iptables, iproute2: real network partitions (kvstore.cluster.netns); without them the
#   harness uses the gRPC-seam faults
# - prometheus: a real Prometheus server scrapes every node's /metrics (tests/cluster)
# - chromium-headless-shell: the HTML pages (ledger.html, the checker's report) are opened
#   in a headless browser (tests/harness, tests/checker)
# - etcd-server: the store a user would pick instead, for bench/vs_etcd.py
want=()
command -v iptables >/dev/null || want+=(iptables iproute2)
command -v prometheus >/dev/null || want+=(prometheus)
command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null \
  || want+=(chromium-headless-shell)
command -v etcd >/dev/null || want+=(etcd-server)
if [ "$(id -u)" = 0 ] && [ ${#want[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${want[@]}") >/dev/null 2>&1 \
    || echo "setup: could not install ${want[*]}; the tests that need them skip" >&2
fi
