"""``python -m kvstore``: the command-line interface."""

from kvstore.cli import main

raise SystemExit(main())
