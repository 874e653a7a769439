"""Speed of the linearizability checker on the Porcupine reference corpus.

Usage: python bench/checker.py [--json] [--rounds 5] [--corpus DIR] [--explain]
                               [--keep-going SECONDS]

For every file in ``verdicts.tsv`` it parses the history once, then checks it ``--rounds``
times (verdict only unless ``--explain``) and takes the median. By default it checks as
Porcupine does: the verdict is known at the first failing partition, and the check stops
there (``kvstore check --first-failure``). ``--keep-going 1`` is the CLI's default, which
gives the other partitions 1 s more so that more failing keys are reported.
Each figure is put beside Porcupine's time for the same file from ``reference_ms.tsv``
(Go, measured on a 2-core machine of this kind: Go cannot run here, so the reference is
that table, not a same-run measurement) as a ratio. Also reports the slowest files, the
total, whether every verdict matched, and the peak resident memory of this process.
Exit status 1 if a verdict is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kvstore.checker import CheckResult, check_history, load_history

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus" / "porcupine"


def _tsv(path: Path) -> dict[str, str]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return {r[0]: r[1] for r in rows}


def run(corpus: Path, rounds: int, explain: bool, keep_going: float) -> dict[str, Any]:
    expected = _tsv(corpus / "verdicts.tsv")
    reference = {k: float(v) / 1000 for k, v in _tsv(corpus / "reference_ms.tsv").items()}
    files: list[dict[str, Any]] = []
    for name, want in expected.items():
        t0 = time.perf_counter()
        history = load_history(corpus / name)
        # Pairing events into operations is parsing: Porcupine's input is already paired.
        history.operations()
        parse_s = time.perf_counter() - t0
        times: list[float] = []
        verdict = ""
        for _ in range(rounds):
            t0 = time.perf_counter()
            res = check_history(history, explain=explain, keep_going_s=keep_going)
            times.append(time.perf_counter() - t0)
            verdict = res.verdict
        got = verdict.replace(" ", "-")
        ok = (res.ops == 0) if want == "skip-empty" else (got == want)
        check_s = statistics.median(times)
        ref = reference.get(name)
        files.append(
            {
                "file": name,
                "expected": want,
                "verdict": got,
                "correct": ok,
                "ops": res.ops,
                "parse_s": round(parse_s, 6),
                "check_s": round(check_s, 6),
                "porcupine_s": ref,
                "ratio": round(check_s / ref, 3) if ref else None,
                **(_windows(res) if explain else {}),
            }
        )
    with_ref = [f for f in files if f["porcupine_s"]]
    total_check = sum(f["check_s"] for f in with_ref)
    total_parse = sum(f["parse_s"] for f in with_ref)
    total_ref = sum(f["porcupine_s"] for f in with_ref)
    slowest = sorted(files, key=lambda f: -f["check_s"])[:8]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": rounds,
        "explain": explain,
        "keep_going_s": keep_going,
        "all_correct": all(f["correct"] for f in files),
        "total": {
            "files": len(with_ref),
            "check_s": round(total_check, 4),
            "parse_s": round(total_parse, 4),
            "porcupine_s": round(total_ref, 4),
            "ratio": round(total_check / total_ref, 3),
            "ratio_with_parse": round((total_check + total_parse) / total_ref, 3),
        },
        "max_file_s": round(max(f["check_s"] for f in files), 4),
        "files_within_2x": sum(1 for f in with_ref if f["ratio"] <= 2),
        "files_over_2x_ms": sorted(
            (
                {"file": f["file"], "ratio": f["ratio"], "check_ms": round(f["check_s"] * 1e3, 3)}
                for f in with_ref
                if f["ratio"] > 2
            ),
            key=lambda f: -f["ratio"],
        )[:10],
        "slowest": [
            {k: f[k] for k in ("file", "check_s", "porcupine_s", "ratio")} for f in slowest
        ],
        "peak_rss_mb": round(peak_kb / 1024, 1),
        **({"explanations": _explanations(files)} if explain else {}),
        "files": files,
    }


def _windows(res: CheckResult) -> dict[str, Any]:
    ces = res.counterexamples
    return {
        "windows": [len(c.window) for c in ces],
        "windows_minimal": all(c.window_minimal for c in ces),
    }


def _explanations(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Failing files: how many got a 1-minimal window, its size, and the time it took."""
    failing = [f for f in files if f["windows"]]
    sizes = sorted(w for f in failing for w in f["windows"])
    return {
        "failing_files": len(failing),
        "files_minimal": sum(1 for f in failing if f["windows_minimal"]),
        "not_minimal": [f["file"] for f in failing if not f["windows_minimal"]],
        "window_size_median": statistics.median(sizes) if sizes else None,
        "window_size_max": max(sizes, default=None),
        "explain_s_median": round(statistics.median(f["check_s"] for f in failing), 4),
        "explain_s_max": round(max(f["check_s"] for f in failing), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--explain", action="store_true", help="also build counterexamples")
    ap.add_argument("--keep-going", type=float, default=0.0, help="seconds after a failure")
    args = ap.parse_args()
    if not (args.corpus / "verdicts.tsv").exists():
        print(f"corpus not found at {args.corpus}", file=sys.stderr)
        return 2
    out = run(args.corpus, max(1, args.rounds), args.explain, args.keep_going)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for f in out["files"]:
            mark = "" if f["correct"] else "  WRONG VERDICT"
            print(
                f"{f['file']:24} {f['check_s']:9.4f}s  porcupine {f['porcupine_s'] or 0:8.4f}s"
                f"  x{f['ratio']}{mark}"
            )
        t = out["total"]
        print(
            f"total {t['check_s']:.3f}s vs porcupine {t['porcupine_s']:.3f}s: ratio "
            f"{t['ratio']} ({t['ratio_with_parse']} with parsing); slowest file "
            f"{out['max_file_s']}s; peak RSS {out['peak_rss_mb']} MB"
        )
    return 0 if out["all_correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
