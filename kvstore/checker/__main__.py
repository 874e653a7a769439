"""`python -m kvstore.checker check HISTORY ...`: the checker CLI on its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kvstore.checker.cli import register


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kvstore.checker")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
