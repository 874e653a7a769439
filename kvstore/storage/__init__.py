"""Storage engines: one interface (``base.Engine``), several engines, one contract suite.

Engines: ``memory`` (``MemoryEngine``, for tests; nothing survives) and ``sqlite``
(``SqliteEngine``, the durable default). ``open_engine`` picks one by name, as a node's
configuration names it. Every engine is released with ``await engine.close()``.
"""

from __future__ import annotations

from pathlib import Path

from kvstore.storage.base import Engine, EngineClosed, Hint
from kvstore.storage.memory import MemoryEngine
from kvstore.storage.sqlite import DEFAULT_CACHE_BYTES, SqliteEngine

ENGINE_KINDS = ("memory", "sqlite")

# The file a sqlite engine uses when ``open_engine`` is given a data directory.
SQLITE_FILENAME = "kv.sqlite3"

__all__ = [
    "ENGINE_KINDS",
    "SQLITE_FILENAME",
    "Engine",
    "EngineClosed",
    "Hint",
    "MemoryEngine",
    "SqliteEngine",
    "open_engine",
    "open_engine_async",
]


def _sqlite_path(path: Path | None) -> Path:
    if path is None:
        raise ValueError("the sqlite engine needs a path (a database file or a data directory)")
    path = Path(path)
    return path / SQLITE_FILENAME if path.is_dir() else path


def open_engine(kind: str, path: Path | None) -> Engine:
    """Open the engine named ``kind``; ``path`` is a database file or an existing directory.

    Opening SQLite touches the disk (and may fsync): from inside a running event loop,
    prefer ``await open_engine_async(...)``.
    """
    if kind == "memory":
        return MemoryEngine()
    if kind == "sqlite":
        return SqliteEngine(_sqlite_path(path))
    raise ValueError(f"unknown storage engine {kind!r}; expected one of {ENGINE_KINDS}")


async def open_engine_async(
    kind: str, path: Path | None, *, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> Engine:
    """``open_engine`` without blocking the event loop; ``cache_bytes`` sizes SQLite's
    read cache (0: none)."""
    if kind == "memory":
        return MemoryEngine()
    if kind == "sqlite":
        return await SqliteEngine.open(_sqlite_path(path), cache_bytes=cache_bytes)
    raise ValueError(f"unknown storage engine {kind!r}; expected one of {ENGINE_KINDS}")
