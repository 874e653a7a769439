"""Runs the one storage contract (``contract.py``) against every engine kind.

A new engine joins by adding its kind to ``ENGINE_KINDS`` and a branch to ``_open``.
Two wrappers join the same way, as test-only kinds: the lying-disk fault wrapper when
it is not lying (it must then be the engine it wraps) and the simulator's engine (a
memory disk behind a modelled fsync).
The SQLite engine pages scans in chunks of 4 here so that paging is exercised by every
scan test, not only by large ones. It also runs twice more: without its read cache (the
path every read took before it), and with a cache of about three records, so that
eviction is exercised by every test as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kvstore.sim.disk import SimDisk, SimEngine
from kvstore.storage import ENGINE_KINDS, Engine, MemoryEngine, SqliteEngine
from kvstore.storage.lying import LyingDisk
from kvstore.storage.read_cache import ENTRY_OVERHEAD
from tests.storage.contract import EngineContract, MakeEngine


async def _open(kind: str, directory: Path) -> Engine:
    if kind == "memory":
        return MemoryEngine()
    if kind == "sqlite":
        return await SqliteEngine.open(directory / "kv.sqlite3", scan_chunk=4)
    if kind == "sqlite-no-cache":
        return await SqliteEngine.open(directory / "kv.sqlite3", scan_chunk=4, cache_bytes=0)
    if kind == "sqlite-tiny-cache":
        tiny = 3 * (ENTRY_OVERHEAD + 8)
        return await SqliteEngine.open(directory / "kv.sqlite3", scan_chunk=4, cache_bytes=tiny)
    if kind == "lying-disk-honest":
        return LyingDisk(MemoryEngine(), lambda: False)
    if kind == "sim":
        return SimEngine(SimDisk(fsync_s=0.0001))
    raise AssertionError(f"no test opener for engine kind {kind!r}")


@pytest.fixture(
    params=[*ENGINE_KINDS, "sqlite-no-cache", "sqlite-tiny-cache", "lying-disk-honest", "sim"]
)
async def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeEngine]:
    kind: str = request.param
    opened: list[Engine] = []

    async def make() -> Engine:
        engine = await _open(kind, tmp_path / f"engine{len(opened)}")
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        await engine.close()


@pytest.fixture
async def engine(make_engine: MakeEngine) -> Engine:
    return await make_engine()


class TestEngineContract(EngineContract):
    """Every engine kind, every contract test."""
