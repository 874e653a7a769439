"""A history too big to hold: `kvstore check --stream` against the in-memory check.

Usage: python bench/checker_stream.py [--json] [--ops 1000000] [--keys 1000]
                                      [--processes 50] [--seed 1] [--no-baseline]

Writes a synthetic jsonl register history (`--ops` operations on `--keys` keys by
`--processes` clients, linearizable by construction: each op takes effect at its
completion), then checks it twice, each in its own process so that peak RSS is that
check's own: `kvstore check --stream` (the subject) and `kvstore check` (the baseline,
which holds the whole history). Prints both times, both peak RSS figures and the ratios.
A wrong verdict exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def synthesize(path: Path, ops: int, keys: int, processes: int, seed: int) -> int:
    """Write the history; returns the number of events. Values are unique per write, so a
    read names exactly the write it saw."""
    rnd = random.Random(seed)
    state: dict[int, int | None] = {}
    open_ops: dict[int, tuple[str, int, int | None]] = {}
    started = done = events = 0
    next_value = 0
    with open(path, "w", encoding="utf-8") as out:
        while done < ops:
            p = rnd.randrange(processes)
            op = open_ops.pop(p, None)
            if op is None:
                if started >= ops:
                    continue
                started += 1
                key = rnd.randrange(keys)
                if rnd.random() < 0.5:
                    next_value += 1
                    open_ops[p] = ("write", key, next_value)
                    line = {"process": p, "type": "invoke", "f": "write", "key": key,
                            "value": next_value}  # fmt: skip
                else:
                    open_ops[p] = ("read", key, None)
                    line = {"process": p, "type": "invoke", "f": "read", "key": key,
                            "value": None}  # fmt: skip
            else:
                f, key, value = op
                if f == "write":
                    state[key] = value
                else:
                    value = state.get(key)
                line = {"process": p, "type": "ok", "f": f, "key": key, "value": value}
                done += 1
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
            events += 1
    return events


def _check(path: Path, stream: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "kvstore", "check", "--json", str(path)]
    if stream:
        cmd.insert(4, "--stream")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    out = json.loads(proc.stdout)
    return {
        "verdict": out["verdict"],
        "seconds": round(wall, 2),
        # ru_maxrss of children is that of the largest child so far, so run() checks the
        # streamed (smaller) one first.
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "partitions": out["partitions"],
        **({"stream": out["stream"]} if stream else {}),
    }


def run(ops: int, keys: int, processes: int, seed: int, baseline: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kvstore-bench-stream-") as tmp:
        path = Path(tmp) / "history.jsonl"
        t0 = time.perf_counter()
        events = synthesize(path, ops, keys, processes, seed)
        gen_s = time.perf_counter() - t0
        size = path.stat().st_size
        streamed = _check(path, stream=True)
        held = _check(path, stream=False) if baseline else None
    res: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "history": {
            "ops": ops,
            "events": events,
            "keys": keys,
            "processes": processes,
            "bytes": size,
            "generate_s": round(gen_s, 1),
        },
        "stream": streamed,
        "in_memory": held,
        "correct": streamed["verdict"] == "linearizable"
        and (held is None or held["verdict"] == "linearizable"),
    }
    if held is not None:
        res["ratios"] = {
            "time_stream_over_memory": round(streamed["seconds"] / held["seconds"], 2),
            "rss_stream_over_memory": round(streamed["peak_rss_mb"] / held["peak_rss_mb"], 3),
        }
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-memory check")
    args = ap.parse_args()
    res = run(args.ops, args.keys, args.processes, args.seed, not args.no_baseline)
    if args.json:
        print(json.dumps(res))
    else:
        print(json.dumps(res, indent=2))
    return 0 if res["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
