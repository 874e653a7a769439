"""kvstore.checker: a linearizability and staleness checker for histories from any system.

Stands alone (imports nothing else from kvstore). Public API:

    load_history(path, fmt="auto") -> History          # jsonl | edn | porcupine-kv | jepsen-log
    parse_history(text, fmt="auto") -> History
    check_history(history, model=None, *, time_limit=None) -> CheckResult
    analyse_staleness(history) -> StalenessReport
    save_history(events, path, fmt=None)               # jsonl, or edn for *.edn
    JsonlWriter(path).write(Event(...))                 # streaming, for the harness
    write_html(result, path)

A model is init, a pure step(state, input, output) -> (ok, new_state) and an optional
partition; see models.py. Verdicts are strings, never bools.
"""

from __future__ import annotations

from kvstore.checker.checker import check_file, check_history, check_operations
from kvstore.checker.formats import (
    JsonlWriter,
    dump_edn,
    dump_jsonl,
    load_history,
    parse_history,
    save_history,
)
from kvstore.checker.history import Event, History, HistoryFormatError, Operation
from kvstore.checker.models import CAS_REGISTER, KV, MODELS, REGISTER, UNKNOWN, Model
from kvstore.checker.report_html import render_html, write_html
from kvstore.checker.result import CheckResult, Counterexample, LinearizedStep, PartitionResult
from kvstore.checker.search import LINEARIZABLE, NOT_LINEARIZABLE, UNKNOWN_VERDICT, Verdict
from kvstore.checker.staleness import StalenessReport, analyse_staleness

__all__ = [
    "CAS_REGISTER",
    "KV",
    "LINEARIZABLE",
    "MODELS",
    "NOT_LINEARIZABLE",
    "REGISTER",
    "UNKNOWN",
    "UNKNOWN_VERDICT",
    "CheckResult",
    "Counterexample",
    "Event",
    "History",
    "HistoryFormatError",
    "JsonlWriter",
    "LinearizedStep",
    "Model",
    "Operation",
    "PartitionResult",
    "StalenessReport",
    "Verdict",
    "analyse_staleness",
    "check_file",
    "check_history",
    "check_operations",
    "dump_edn",
    "dump_jsonl",
    "load_history",
    "parse_history",
    "render_html",
    "save_history",
    "write_html",
]
