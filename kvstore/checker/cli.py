"""The `check` subcommand: `kvstore check HISTORY [options]`.

Exit status: 0 linearizable, 1 not linearizable, 2 bad input or usage, 3 unknown (time
limit). `--staleness` adds the staleness figures; the exit status still follows the
linearizability verdict. The top-level CLI calls `register(subparsers)`; `func` on the
parsed namespace runs the check and returns the exit status.

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
from kvstore.checker.history import HistoryFormatError, printable
from kvstore.checker.models import MODELS
from kvstore.checker.report_html import write_html
from kvstore.checker.report_text import format_result, format_staleness
from kvstore.checker.staleness import analyse_staleness

EXIT_OK = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_BAD_INPUT = 2
EXIT_UNKNOWN = 3

_EXIT = {"linearizable": EXIT_OK, "not linearizable": EXIT_NOT_LINEARIZABLE}


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
    p.add_argument("--format", choices=FORMATS, default="auto", help="history format")
    p.add_argument(
        "--time-limit", type=float, default=None, metavar="SECONDS", help="give up: unknown"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--html", metavar="REPORT.html", help="write a self-contained HTML report")
    p.add_argument("--staleness", action="store_true", help="also run the staleness analyses")
    p.add_argument(
        "--all-partitions",
        action="store_true",
        help="check every partition fully even after one has failed",
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


def run_check(args: argparse.Namespace) -> int:
    if args.time_limit is not None and args.time_limit <= 0:
        return _err("--time-limit must be positive")
    path = str(args.history)
    try:
        history = load_history(path, args.format)
        if not history.events:
            raise HistoryFormatError(None, "at least one event", "none")
        result = check_history(
            history,
            args.model,
            time_limit=args.time_limit,
            keep_going_s=None if args.all_partitions else 1.0,
        )
        staleness = analyse_staleness(history) if args.staleness else None
    except HistoryFormatError as e:
        return _bad(path, e.line, e.detail)
    except OSError as e:
        return _bad(path, None, e.strerror or str(e))
    # The last line of defence: the readers bound depth and sizes, so these mean a case
    # they missed; it is still the input's doing, so bad input rather than a traceback.
    except RecursionError:
        return _bad(path, None, "values nested too deeply to check")
    except MemoryError:
        return _bad(path, None, "out of memory reading or checking the history")
    except (ValueError, OverflowError) as e:
        detail = str(e)[:200]
        return _bad(path, None, f"cannot check this history ({type(e).__name__}: {detail})")
    if args.html:
        try:
            write_html(result, args.html)
        except OSError as e:
            return _bad(args.html, None, e.strerror or str(e))
        except UnicodeEncodeError as e:  # a file name with undecodable bytes, in the page
            return _bad(args.html, None, f"cannot write the report ({e.reason})")
    if args.json:
        out: dict[str, Any] = result.to_json()
        if staleness is not None:
            out["staleness"] = staleness.to_json()
        print(json.dumps(out))
    else:
        print(format_result(result))
        if staleness is not None:
            print(format_staleness(staleness))
        if args.html:
            print(f"report: {printable(args.html)}")
    return _EXIT.get(result.verdict, EXIT_UNKNOWN)
