"""``open_engine`` / ``open_engine_async``: engines by name, as a node's config names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvstore.storage import (
    ENGINE_KINDS,
    SQLITE_FILENAME,
    MemoryEngine,
    SqliteEngine,
    open_engine,
    open_engine_async,
)
from tests.storage.contract import rec


async def test_every_kind_opens(tmp_path: Path) -> None:
    for kind in ENGINE_KINDS:
        for opened in (
            open_engine(kind, tmp_path / f"{kind}-sync"),
            await open_engine_async(kind, tmp_path / f"{kind}-async"),
        ):
            try:
                assert await opened.apply(rec(b"k", b"v", 1)) is True
                assert await opened.get(b"k") == rec(b"k", b"v", 1)
            finally:
                await opened.close()


async def test_memory_needs_no_path() -> None:
    engine = await open_engine_async("memory", None)
    assert isinstance(engine, MemoryEngine)
    await engine.close()


async def test_sqlite_path_is_a_file_or_a_directory(tmp_path: Path) -> None:
    as_file = await open_engine_async("sqlite", tmp_path / "sub" / "my.db")
    assert isinstance(as_file, SqliteEngine) and as_file.path == tmp_path / "sub" / "my.db"
    await as_file.close()
    (tmp_path / "datadir").mkdir()
    in_dir = await open_engine_async("sqlite", tmp_path / "datadir")
    assert isinstance(in_dir, SqliteEngine)
    assert in_dir.path == tmp_path / "datadir" / SQLITE_FILENAME
    await in_dir.close()
    assert (tmp_path / "datadir" / SQLITE_FILENAME).is_file()


async def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a path"):
        await open_engine_async("sqlite", None)
    with pytest.raises(ValueError, match="needs a path"):
        open_engine("sqlite", None)
    with pytest.raises(ValueError, match="unknown storage engine"):
        open_engine("rocksdb", tmp_path)
    with pytest.raises(ValueError, match="unknown storage engine"):
        await open_engine_async("rocksdb", tmp_path)
