"""The `check` subcommand: `kvstore check HISTORY [options]`.

Exit status: 0 linearizable, 1 not linearizable, 2 bad input or usage, 3 unknown (time
limit). `--staleness` adds the staleness figures; the exit status still follows the
linearizability verdict. The top-level CLI calls `register(subparsers)`; `func` on the
parsed namespace runs the check and returns the exit status.

Every output (text, `--json`, `--edn`) says how keys were found (`key_encoding`: the
project's `key` field, Jepsen `independent` tuples, or none: one register) and which
keys; for the register models also the initial value (`--initial`, an EDN value,
default nil) and the nil-read rule in force (`--nil-read`, default per format; see
formats/__init__.py). `--initial` for the kv model, or a value that is not EDN, is a
usage error (exit 2).

Bad input is exit 2 with one line on stderr, `kvstore check: FILE:LINE: what is wrong`
(`FILE: ...` when no line applies), never a traceback and never exit 1: every reader
raises HistoryFormatError with a line; a file that cannot be read, or holds no event at
all (empty, blank, only comments), is bad input too. RecursionError, MemoryError,
ValueError and OverflowError from anywhere in loading or checking are caught as a last
line of defence, so a case the readers missed still gets a message rather than a trace.
The message is made printable (control characters escaped): it may quote the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kvstore.checker.checker import check_history
from kvstore.checker.formats import FORMATS, load_history
from kvstore.checker.formats.edn import Symbol, read_value, strict_values, to_edn
from kvstore.checker.formats.edn_result import result_to_edn
from kvstore.checker.history import History, HistoryFormatError, freeze, key_order, printable
from kvstore.checker.models import (
    MODELS,
    Model,
    get_model,
    infer_model,
    with_initial,
    with_nil_read,
)
from kvstore.checker.report_html import write_html
from kvstore.checker.report_text import format_result, format_staleness
from kvstore.checker.result import CheckResult
from kvstore.checker.staleness import analyse_staleness
from kvstore.checker.stream import check_stream

EXIT_OK = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_BAD_INPUT = 2
EXIT_UNKNOWN = 3

_EXIT = {"linearizable": EXIT_OK, "not linearizable": EXIT_NOT_LINEARIZABLE}
_REGISTERS = ("register", "cas-register")
_ENCODINGS = {
    "key-field": "the key field",
    "independent": "Jepsen independent [k v] tuples",
}
_KEYS_SHOWN = 20


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "check",
        help="check a history for linearizability (and staleness)",
        description="Check a history for linearizability per key; optionally measure "
        "staleness. Exit status: 0 linearizable, 1 not, 2 bad input, 3 unknown (time limit).",
    )
    p.add_argument("history", metavar="HISTORY", help="history file")
    p.add_argument(
        "--model",
        choices=sorted(MODELS),
        default=None,
        help="sequential model (default: kv if get/put/append occur, cas-register if cas "
        "does, else register)",
    )
    p.add_argument(
        "--initial",
        metavar="VALUE",
        default=None,
        help="the register's value before any op, for the register and cas-register models, "
        'as an EDN value: 0, nil, "text", :keyword (default: nil, as Jepsen\'s register '
        "tests start; Knossos's cas-register data starts at 0)",
    )
    p.add_argument(
        "--nil-read",
        choices=("unknown", "value"),
        default=None,
        help="a read of nil, for the register models: unknown (Knossos's rule: it fits any "
        "value) or value (the register held nil). Default: unknown for edn and knossos "
        "histories, value for jsonl and jepsen-log",
    )
    p.add_argument("--format", choices=FORMATS, default="auto", help="history format")
    p.add_argument(
        "--time-limit", type=float, default=None, metavar="SECONDS", help="give up: unknown"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument(
        "--edn",
        action="store_true",
        help="print one EDN map shaped like Jepsen's independent checker around Knossos's "
        "analysis: {:valid? true|false|:unknown, :results {key {:valid? ...}}, "
        ":failures [keys], ...}; a failing key has :op, :previous-ok and :final-paths",
    )
    p.add_argument("--html", metavar="REPORT.html", help="write a self-contained HTML report")
    p.add_argument("--staleness", action="store_true", help="also run the staleness analyses")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument(
        "--all-partitions",
        action="store_true",
        help="check every partition fully even after one has failed",
    )
    stop.add_argument(
        "--first-failure",
        action="store_true",
        help="stop at the first failing partition, as Porcupine does (default: the others "
        "get 1 s more, so that more failing keys are reported)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="for histories too big to hold: read in chunks of lines, spill ops to "
        "temporary files per key bucket and check a bucket at a time, in memory bounded by "
        "the largest bucket (not with --html, --edn, --staleness or --initial; an EDN file "
        "that is one vector of ops cannot stream)",
    )
    p.set_defaults(func=run_check)


def _one_line(msg: str) -> str:
    if msg.isprintable():
        return msg
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)


def _err(msg: str) -> int:
    """A usage error (not about a file)."""
    print(_one_line(f"kvstore check: error: {msg}"), file=sys.stderr)
    return EXIT_BAD_INPUT


def _bad(path: str, line: int | None, msg: str) -> int:
    where = path if line is None else f"{path}:{line}"
    print(_one_line(f"kvstore check: {where}: {msg}"), file=sys.stderr)
    return EXIT_BAD_INPUT


_NO_INITIAL = object()


# What reading or checking a history can raise: all of it the input's doing.
_INPUT_ERRORS = (
    HistoryFormatError,
    OSError,
    RecursionError,
    MemoryError,
    ValueError,
    OverflowError,
)


def _bad_input(path: str, e: Exception) -> int:
    """Exit 2 with one line naming the problem, for any of _INPUT_ERRORS."""
    if isinstance(e, HistoryFormatError):
        return _bad(path, e.line, e.detail)
    if isinstance(e, OSError):
        return _bad(path, None, e.strerror or str(e))
    if isinstance(e, UnicodeDecodeError):  # --stream reads the file as text, line by line
        return _bad(path, None, f"expected UTF-8 text, found an undecodable byte ({e.reason})")
    # The last line of defence: the readers bound depth and sizes, so these mean a case
    # they missed; it is still the input's doing, so bad input rather than a traceback.
    if isinstance(e, RecursionError):
        return _bad(path, None, "values nested too deeply to check")
    if isinstance(e, MemoryError):
        return _bad(path, None, "out of memory reading or checking the history")
    detail = str(e)[:200]
    return _bad(path, None, f"cannot check this history ({type(e).__name__}: {detail})")


def _keep_going(args: argparse.Namespace) -> float | None:
    """--all-partitions: no limit; --first-failure: none; default: 1 s more."""
    return None if args.all_partitions else 0.0 if args.first_failure else 1.0


def parse_initial(text: str) -> Any:
    """The value of `--initial`: one EDN value, frozen as history values are (so `:a` is a
    keyword, distinct from "a"). `null` is taken as nil. Raises ValueError."""
    try:
        v = read_value(text)
    except HistoryFormatError as e:
        raise ValueError(f"--initial: not one EDN value ({e.detail})") from None
    if type(v) is Symbol:
        if v == "null":
            return None
        raise ValueError(
            f"--initial: {v} is an EDN symbol; write a string as '\"{v}\"' or a keyword as :{v}"
        )
    return freeze(strict_values(v))


def _model_for(history: History, name: str | None, initial: Any) -> Model | str | None:
    """What to pass to check_history: the model name, or a Model when --initial is set."""
    if initial is _NO_INITIAL:
        return name
    # Inferring needs the ops: a second pairing pass, only when --initial comes alone.
    model = get_model(name) if name is not None else infer_model(history.operations())
    return with_initial(model, initial)


def _key_text(k: Any) -> str:
    return printable(k) if isinstance(k, int) or type(k) is str else repr(k)


def _json_key(k: Any) -> Any:
    return k if k is None or isinstance(k, bool | int | float | str) else repr(k)


def _summary(history: History, enc: str, result: CheckResult, initial: Any) -> list[str]:
    """The text lines on keys and, for the register models, the start and the nil rule."""
    lines: list[str] = []
    keys = sorted((p.key for p in result.partitions), key=key_order)
    if enc in _ENCODINGS:
        shown = ", ".join(_key_text(k) for k in keys[:_KEYS_SHOWN])
        more = f", ... {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else ""
        lines.append(f"keys: {len(keys)} by {_ENCODINGS[enc]}: {shown}{more}")
    if result.model in _REGISTERS:
        start = to_edn(None if initial is _NO_INITIAL else initial)
        rule = (
            "unknown (Knossos's rule: fits any value)"
            if history.nil_read_is_unknown
            else "the value nil"
        )
        lines.append(f"register starts at {start}; a read of nil is {rule}")
    return lines


def run_check(args: argparse.Namespace) -> int:
    if args.time_limit is not None and args.time_limit <= 0:
        return _err("--time-limit must be positive")
    initial: Any = _NO_INITIAL
    if args.initial is not None:
        try:
            initial = parse_initial(args.initial)
        except ValueError as e:
            return _err(str(e))
    path = str(args.history)
    if args.stream:
        return _run_stream(args, path, initial)
    try:
        history = load_history(path, args.format)
        if not history.events:
            raise HistoryFormatError(None, "at least one event", "none")
        if args.nil_read is not None:
            history.nil_read_is_unknown = args.nil_read == "unknown"
        try:
            model = _model_for(history, args.model, initial)
        except ValueError as e:  # --initial for a model without an initial value
            return _err(f"--initial: {e}")
        result = check_history(
            history,
            model,
            time_limit=args.time_limit,
            keep_going_s=_keep_going(args),
        )
        staleness = (
            analyse_staleness(
                history,
                **({} if initial is _NO_INITIAL else {"initial": initial}),
            )
            if args.staleness
            else None
        )
    except _INPUT_ERRORS as e:
        return _bad_input(path, e)
    if args.html:
        try:
            write_html(result, args.html)
        except OSError as e:
            return _bad(args.html, None, e.strerror or str(e))
        except UnicodeEncodeError as e:  # a file name with undecodable bytes, in the page
            return _bad(args.html, None, f"cannot write the report ({e.reason})")
    encoding = history.key_encoding  # a pass over the events: once
    keys = [p.key for p in result.partitions] if encoding != "none" else []
    keys.sort(key=key_order)
    is_register = result.model in _REGISTERS
    start = None if initial is _NO_INITIAL else initial
    nil_rule = "unknown" if history.nil_read_is_unknown else "value"
    if args.json:
        out: dict[str, Any] = result.to_json()
        out["key_encoding"] = encoding
        out["keys"] = [_json_key(k) for k in keys]
        if is_register:
            out["initial"] = _json_key(start)
            out["nil_read"] = nil_rule
        if staleness is not None:
            out["staleness"] = staleness.to_json()
        print(json.dumps(out))
    elif args.edn:
        # The same model check_history ran, to word why a failing op is inconsistent.
        used = get_model(result.model)
        if is_register:
            used = with_nil_read(with_initial(used, start), history.nil_read_is_unknown)
        print(
            result_to_edn(
                result,
                history,
                model=used,
                initial=start,
                nil_read=nil_rule if is_register else None,
                keys=keys,
                staleness=staleness.to_json() if staleness is not None else None,
            )
        )
    else:
        head, _, rest = format_result(result).partition("\n")
        print("\n".join([head, *_summary(history, encoding, result, initial), rest]))
        if staleness is not None:
            print(format_staleness(staleness))
        if args.html:
            print(f"report: {printable(args.html)}")
    return _EXIT.get(result.verdict, EXIT_UNKNOWN)


def _run_stream(args: argparse.Namespace, path: str, initial: Any) -> int:
    """`kvstore check --stream`: the verdict and per-key counts, in bounded memory."""
    refused = [
        flag
        for flag, on in (
            ("--html", args.html),
            ("--edn", args.edn),
            ("--staleness", args.staleness),
            ("--initial", initial is not _NO_INITIAL),
            ("--time-limit", args.time_limit is not None),
        )
        if on
    ]
    if refused:
        return _err(f"--stream does not go with {', '.join(refused)}")
    try:
        result, stats = check_stream(
            path,
            args.model,
            args.format,
            nil_read=args.nil_read,
            keep_going_s=_keep_going(args),
        )
    except _INPUT_ERRORS as e:
        return _bad_input(path, e)
    if args.json:
        out: dict[str, Any] = result.to_json()
        out["stream"] = stats.to_json()
        print(json.dumps(out))
    else:
        print(format_result(result))
        print(
            f"streamed: {stats.events} events, {stats.ops} ops, {stats.keys} keys in "
            f"{stats.buckets} buckets (largest {stats.largest_bucket_ops} ops); "
            f"parse {stats.parse_s:.1f} s, check {stats.check_s:.1f} s"
        )
    return _EXIT.get(result.verdict, EXIT_UNKNOWN)
