"""The pure core of kvstore.

Rules: no module under ``kvstore.core`` imports asyncio, grpc, sqlite3, socket, time,
random or any I/O library. Time, randomness and I/O results come in as arguments;
decisions go out as values. ``tests/core/test_purity.py`` enforces this by scanning imports.
"""
