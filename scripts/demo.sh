#!/usr/bin/env bash
# Sets everything up, then runs the main job end to end:
#  1. the tour: a local 5-node cluster from cluster.toml, per-call consistency, a node
#     killed and restarted, a clean shutdown;
#  2. the harness: two short runs under faults, each checked against its promise
#     (linearizable under partitions and kills; quorum under clock skew, which loses
#     writes to last-writer-wins);
#  3. the checker on its own, on the harness's recorded history;
#  4. the simulator: the same test on virtual time, many seeds in seconds, and the
#     first failing seed replayed exactly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
kv=.venv/bin/kvstore
$kv demo --config cluster.toml
echo
echo "== harness: consistency=linearizable under partitions and kills (15 s)"
$kv test --consistency linearizable --nemesis partition,kill --time-limit 15 --store run/store \
  --seed 1 || echo "(exit $?: see the verdict above)"
echo
echo "== harness: quorum under clock skew, held to linearizable (15 s)"
$kv test --consistency quorum --nemesis clock --time-limit 15 --store run/store \
  --expect linearizable --seed 1 || echo "(exit $?: the promise was broken, as expected)"
echo
echo "== checker: the last history, checked on its own"
latest=run/store/register-quorum-clock/latest/history.jsonl
$kv check "$latest" --staleness --html run/store/check-report.html \
  || echo "(exit $?: not linearizable; report in run/store/check-report.html)"
echo
echo "== simulator: quorum held to linearizable, 10 seeds of 5 simulated seconds"
$kv sim --consistency quorum --nemesis partition,kill,pause,clock,drop --expect linearizable \
  --keys 2 --rate 300 --time-limit 5 --seeds 0-9 --store run/store \
  || echo "(exit $?: some seed broke the promise; replay it with the command above)"
