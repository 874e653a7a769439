#!/usr/bin/env bash
# Sets everything up, then runs the demo: a local 5-node cluster from cluster.toml,
# per-call consistency, a node killed and restarted, a clean shutdown.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
exec .venv/bin/kvstore demo --config cluster.toml "$@"
