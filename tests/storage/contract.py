"""The storage contract, written once and run against every engine.

Like trio's stream checks, the suite knows nothing about any engine: a subclass of
``EngineContract`` only has to provide two fixtures, ``engine`` (a fresh open engine) and
``make_engine`` (an async factory of fresh engines, for tests that need several, such as
the property test). ``tests/storage/test_contract.py`` runs it for every engine kind.

The reference for last-writer-wins is ``kvstore.core.version.newer``: every expectation
here is computed from it (or from a plain dict folded with it), never written by hand.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvstore.core.digests import TOKEN_END, DigestIndex
from kvstore.core.merkle import entry_of
from kvstore.core.ring import token
from kvstore.core.version import Record, Timestamp, newer
from kvstore.storage.base import Engine, EngineClosed, Hint

MakeEngine = Callable[[], Awaitable[Engine]]


def rec(key: bytes, value: bytes | None, wall: int, logical: int = 0, node: str = "n1") -> Record:
    return Record(key, value, Timestamp(wall, logical, node))


def model_apply(state: dict[bytes, Record], record: Record) -> bool:
    """The trivial model: a dict folded with ``newer``; True if ``record`` was stored."""
    current = state.get(record.key)
    if newer(current, record) is current:
        return False
    state[record.key] = record
    return True


async def scan_all(engine: Engine, start: bytes = b"", end: bytes | None = None) -> list[Record]:
    return [r async for r in engine.scan(start, end)]


async def assert_digests_exact(engine: Engine) -> None:
    """The engine's incremental digests equal ones rebuilt from what it now stores."""
    index = engine.digests
    assert index is not None
    model = DigestIndex(index.depth)
    for record in await scan_all(engine):
        model.change(record.key, None, entry_of(record))
    assert index.same_as(model)
    assert index.entries == await engine.count()


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``cond`` until it holds, with a deadline (never a bare sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.001)


# Property-test vocabulary: few keys and narrow clocks, so ties and duplicates are common.
KEYS = [b"", b"a", b"a\x00", b"b", b"\xff"]
NODES = ["a", "ab", "b", "\x00", "z", "\u00e9", "\U0001f600"]


def value_for(key: bytes, ts: Timestamp) -> bytes | None:
    """Each (key, ts) has one value, as real writers guarantee; about 1 in 4 is a tombstone."""
    if (ts.wall * 7 + ts.logical * 3 + len(ts.node)) % 4 == 0:
        return None
    return key + repr(tuple(ts)).encode()


timestamps = st.builds(Timestamp, st.integers(0, 3), st.integers(0, 2), st.sampled_from(NODES))
records = st.builds(
    lambda key, ts: Record(key, value_for(key, ts), ts), st.sampled_from(KEYS), timestamps
)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[Record], list[list[Record]], list[bool], bool]:
    """Records, the same records shuffled and cut into batches, how each batch is sent
    (True: one ``apply`` per record, False: one ``apply_many``), and whether the batches
    run concurrently."""
    original = draw(st.lists(records, max_size=40))
    shuffled = draw(st.permutations(original))
    batches: list[list[Record]] = []
    i = 0
    while i < len(shuffled):
        size = draw(st.integers(1, 6))
        batches.append(list(shuffled[i : i + size]))
        i += size
    singles = [draw(st.booleans()) for _ in batches]
    concurrent = draw(st.booleans())
    return original, batches, singles, concurrent


class EngineContract:
    """Every engine passes every test here. Subclasses provide ``engine``/``make_engine``."""

    # -- last-writer-wins ------------------------------------------------------------

    async def test_unknown_key_is_none(self, engine: Engine) -> None:
        assert await engine.get(b"never") is None
        assert await engine.count() == 0

    async def test_apply_then_get(self, engine: Engine) -> None:
        r = rec(b"k", b"v", 10)
        assert await engine.apply(r) is True
        assert await engine.get(b"k") == r

    async def test_older_record_is_noop(self, engine: Engine) -> None:
        new = rec(b"k", b"new", 10, 5)
        for old in (rec(b"k", b"old", 9, 99), rec(b"k", b"old", 10, 4)):
            await engine.apply(new)
            assert await engine.apply(old) is False
            assert await engine.get(b"k") == new

    async def test_equal_timestamp_is_noop(self, engine: Engine) -> None:
        first = rec(b"k", b"first", 10, 1, "n1")
        same_ts = rec(b"k", b"other", 10, 1, "n1")
        assert await engine.apply(first) is True
        assert await engine.apply(first) is False
        assert await engine.apply(same_ts) is False
        assert await engine.get(b"k") == first

    async def test_newer_record_wins(self, engine: Engine) -> None:
        versions = [rec(b"k", b"v1", 10, 0), rec(b"k", b"v2", 10, 1), rec(b"k", b"v3", 11, 0)]
        for v in versions:
            assert await engine.apply(v) is True
            assert await engine.get(b"k") == v

    async def test_tie_on_clock_broken_by_node(self, engine: Engine) -> None:
        lo = rec(b"k", b"from-a", 10, 3, "node-a")
        hi = rec(b"k", b"from-b", 10, 3, "node-b")
        assert await engine.apply(hi) is True
        assert await engine.apply(lo) is False
        assert await engine.get(b"k") == hi
        assert await engine.apply(rec(b"j", b"x", 10, 3, "node-a")) is True
        assert await engine.apply(rec(b"j", b"y", 10, 3, "node-b")) is True
        got = await engine.get(b"j")
        assert got is not None and got.value == b"y"

    async def test_node_ids_order_by_code_point(self, engine: Engine) -> None:
        # str order is code-point order; an engine comparing UTF-16 or locale-collated
        # text would disagree on these pairs.
        pairs = [("z", "\u00e9"), ("\uffff", "\U00010000"), ("a", "a\x00"), ("", "\x00")]
        for i, (n1, n2) in enumerate(pairs):
            key = b"k%d" % i
            low, high = sorted([n1, n2])
            assert await engine.apply(rec(key, b"hi", 1, 1, high)) is True
            assert await engine.apply(rec(key, b"lo", 1, 1, low)) is False
            got = await engine.get(key)
            assert got is not None and got.ts.node == high

    async def test_large_clock_values(self, engine: Engine) -> None:
        top = 2**63 - 1
        r1 = rec(b"k", b"v1", top - 1, top)
        r2 = rec(b"k", b"v2", top, 0)
        assert await engine.apply(r1) is True
        assert await engine.apply(r2) is True
        assert await engine.get(b"k") == r2

    # -- tombstones and odd values -----------------------------------------------------

    async def test_tombstones(self, engine: Engine) -> None:
        put = rec(b"k", b"v", 10)
        delete = rec(b"k", None, 11)
        assert await engine.apply(put) is True
        assert await engine.apply(delete) is True
        got = await engine.get(b"k")
        assert got == delete and got.is_tombstone
        assert await engine.apply(put) is False  # the delete is newer than the old value
        assert await engine.get(b"k") == delete
        assert await engine.count() == 1  # tombstones are records
        revived = rec(b"k", b"again", 12)
        assert await engine.apply(revived) is True
        assert await engine.get(b"k") == revived
        # A tombstone for a key never seen is still stored, so a late old write loses.
        assert await engine.apply(rec(b"gone", None, 5)) is True
        assert await engine.apply(rec(b"gone", b"late", 4)) is False
        assert await engine.get(b"gone") == rec(b"gone", None, 5)

    async def test_purge_tombstones_removes_only_old_tombstones(self, engine: Engine) -> None:
        old_delete = rec(b"old", None, 10)
        edge_delete = rec(b"edge", None, 20)  # wall == cutoff: kept (strictly older goes)
        new_delete = rec(b"new", None, 30)
        old_value = rec(b"value", b"v", 1)  # values are never purged, however old
        await engine.apply_many([old_delete, edge_delete, new_delete, old_value])
        await engine.apply(rec(b"hinted", None, 1))
        hint_id = await engine.add_hint("n2", rec(b"h", None, 1), 1)
        assert await engine.purge_tombstones(20) == 2  # "old" and "hinted"
        assert await engine.get_many([b"old", b"hinted"]) == [None, None]
        assert await engine.get(b"edge") == edge_delete
        assert await engine.get(b"new") == new_delete
        assert await engine.get(b"value") == old_value
        assert await engine.count() == 3
        assert [h.hint_id for h in await engine.hints()] == [hint_id]  # hints untouched
        assert await engine.purge_tombstones(20) == 0  # idempotent
        # A purged key is a key never seen: any version of it is stored again.
        assert await engine.apply(rec(b"old", b"late", 5)) is True
        assert await engine.get(b"old") == rec(b"old", b"late", 5)

    async def test_purge_never_removes_a_newer_value(self, engine: Engine) -> None:
        keys = [b"p%03d" % i for i in range(100)]
        await engine.apply_many([rec(k, None, 1) for k in keys])
        revive = [engine.apply(rec(k, b"back", 2)) for k in keys[::2]]
        results = await asyncio.gather(engine.purge_tombstones(2), *revive)
        assert results[0] in range(50, 101)
        for key, got in zip(keys, await engine.get_many(keys), strict=True):
            if keys.index(key) % 2 == 0:
                assert got == rec(key, b"back", 2)
            else:
                assert got is None

    async def test_drop_removes_only_the_exact_versions_given(self, engine: Engine) -> None:
        kept, gone, tomb = rec(b"a", b"new", 5), rec(b"b", b"v", 3), rec(b"t", None, 4)
        await engine.apply_many([kept, gone, tomb])
        hint_id = await engine.add_hint("n2", rec(b"b", b"h", 9), 1)
        older = rec(b"a", b"old", 4)  # not the stored version: "a" stays
        assert await engine.drop([older, gone, tomb, rec(b"never", b"x", 1)]) == 2
        assert await engine.get_many([b"a", b"b", b"t"]) == [kept, None, None]
        assert await engine.count() == 1
        assert [h.hint_id for h in await engine.hints()] == [hint_id]  # hints untouched
        assert await engine.drop([gone]) == 0  # idempotent
        assert await engine.apply(rec(b"b", b"older", 1)) is True  # as if never seen
        with pytest.raises(TypeError):
            await engine.drop([b"k"])  # type: ignore[list-item]
        with pytest.raises(ValueError):
            await engine.drop([Record(b"k", b"v", Timestamp(1 << 63, 0, "n1"))])

    async def test_drop_never_removes_a_newer_version(self, engine: Engine) -> None:
        keys = [b"d%03d" % i for i in range(100)]
        olds = [rec(k, b"old", 1) for k in keys]
        await engine.apply_many(olds)
        newer_ones = [engine.apply(rec(k, b"new", 2)) for k in keys[::2]]
        results = await asyncio.gather(engine.drop(olds), *newer_ones)
        assert results[0] in range(50, 101)
        for i, got in enumerate(await engine.get_many(keys)):
            assert got == (rec(keys[i], b"new", 2) if i % 2 == 0 else None)

    async def test_empty_value_and_key_are_not_absent(self, engine: Engine) -> None:
        empty = rec(b"", b"", 1)
        assert await engine.apply(empty) is True
        got = await engine.get(b"")
        assert got is not None and got.value == b"" and not got.is_tombstone
        big = rec(b"\x00\xff" * 100, bytes(range(256)) * 1000, 2)
        assert await engine.apply(big) is True
        assert await engine.get(big.key) == big

    # -- batches -----------------------------------------------------------------------

    async def test_apply_many_in_order(self, engine: Engine) -> None:
        old, new = rec(b"k", b"old", 1), rec(b"k", b"new", 2)
        assert await engine.apply_many([old, new]) == [True, True]
        assert await engine.get(b"k") == new
        old2, new2 = rec(b"j", b"old", 1), rec(b"j", b"new", 2)
        assert await engine.apply_many([new2, old2]) == [True, False]
        assert await engine.get(b"j") == new2

    async def test_apply_many_duplicates(self, engine: Engine) -> None:
        a = rec(b"k", b"a", 5)
        tomb = rec(b"k", None, 6)
        batch = [a, a, rec(b"x", b"x", 1), tomb, a, tomb, rec(b"k", b"older", 4)]
        state: dict[bytes, Record] = {}
        expected = [model_apply(state, r) for r in batch]
        assert expected == [True, False, True, True, False, False, False]
        assert await engine.apply_many(batch) == expected
        assert await engine.get_many([b"k", b"x"]) == [state[b"k"], state[b"x"]]

    async def test_apply_many_result_per_record(self, engine: Engine) -> None:
        rng = random.Random(7)
        batch = [rec(b"k%d" % rng.randrange(20), b"v", rng.randrange(30)) for _ in range(300)]
        await engine.apply_many(batch[:100])
        state: dict[bytes, Record] = {}
        for r in batch[:100]:
            model_apply(state, r)
        expected = [model_apply(state, r) for r in batch[100:]]
        assert await engine.apply_many(tuple(batch[100:])) == expected

    async def test_empty_batches(self, engine: Engine) -> None:
        assert await engine.apply_many([]) == []
        assert await engine.get_many([]) == []
        await engine.delete_hints([])
        assert await engine.count() == 0

    async def test_get_many(self, engine: Engine) -> None:
        a, b = rec(b"a", b"1", 1), rec(b"b", None, 1)
        await engine.apply_many([a, b])
        keys = [b"b", b"missing", b"a", b"a", b""]
        assert await engine.get_many(keys) == [b, None, a, a, None]
        many = [rec(b"m%05d" % i, b"%d" % i, 1) for i in range(1500)]
        await engine.apply_many(many)
        wanted = [*(r.key for r in reversed(many)), b"nope"]
        assert await engine.get_many(wanted) == [*many[::-1], None]

    # -- scan and count ------------------------------------------------------------------

    async def test_scan_order_and_bounds(self, engine: Engine) -> None:
        keys = [
            b"",
            b"\x00",
            b"\x00\x00",
            b"a",
            b"a\x00",
            b"ab",
            b"b",
            b"\x7f",
            b"\xff",
            b"\xff\xff",
        ]
        keys += [b"n%03d" % i for i in range(25)]
        shuffled = keys[:]
        random.Random(3).shuffle(shuffled)
        for i, k in enumerate(shuffled):
            await engine.apply(rec(k, None if i % 5 == 0 else b"v" + k, i + 1))
        ordered = sorted(keys)
        stored = {r.key: r for r in await engine.get_many(keys) if r is not None}
        assert [r.key for r in await scan_all(engine)] == ordered
        assert await scan_all(engine) == [stored[k] for k in ordered]
        bounds: list[tuple[bytes, bytes | None]] = [
            (b"", None),
            (b"a", None),
            (b"a", b"b"),
            (b"a\x00", b"ab"),
            (b"\x00", b"\x00"),
            (b"b", b"a"),
            (b"n005", b"n020"),
            (b"n", b"o"),
            (b"\xff", None),
            (b"zzz", None),
            (b"", b"\x00"),
        ]
        for start, end in bounds:
            want = [k for k in ordered if k >= start and (end is None or k < end)]
            assert [r.key for r in await scan_all(engine, start, end)] == want, (start, end)

    async def test_scan_streams(self, engine: Engine) -> None:
        batch = [rec(b"s%04d" % i, b"x", 1) for i in range(600)]
        await engine.apply_many(batch)
        seen: list[bytes] = []
        async for r in engine.scan(b"s0100"):
            seen.append(r.key)
            if len(seen) == 10:
                break
        assert seen == [b"s%04d" % i for i in range(100, 110)]
        assert len(await scan_all(engine)) == 600

    async def test_count(self, engine: Engine) -> None:
        await engine.apply_many([rec(b"a", b"1", 1), rec(b"a", b"2", 2), rec(b"b", None, 1)])
        await engine.apply(rec(b"c", b"", 1))
        await engine.apply(rec(b"c", b"old", 0))
        assert await engine.count() == 3
        assert await engine.count() == len(await scan_all(engine))

    # -- hints -------------------------------------------------------------------------------

    async def test_hints(self, engine: Engine) -> None:
        r1, r2, r3 = rec(b"k1", b"v1", 1), rec(b"k2", None, 2), rec(b"k3", b"", 3)
        h1 = await engine.add_hint("n2", r1, stored_at_us=300)
        h2 = await engine.add_hint("n3", r2, stored_at_us=100)
        h3 = await engine.add_hint("n2", r3, stored_at_us=200)
        h4 = await engine.add_hint("n2", r1, stored_at_us=200)  # same record again: its own hint
        assert len({h1, h2, h3, h4}) == 4
        want = {
            h1: Hint(h1, "n2", r1, 300),
            h2: Hint(h2, "n3", r2, 100),
            h3: Hint(h3, "n2", r3, 200),
            h4: Hint(h4, "n2", r1, 200),
        }
        by_age = sorted(want.values(), key=lambda h: (h.stored_at_us, h.hint_id))
        assert await engine.hints() == by_age
        assert await engine.hints("n2") == [h for h in by_age if h.owner == "n2"]
        assert await engine.hints("n3") == [want[h2]]
        assert await engine.hints("n9") == []
        assert await engine.hints("n2", limit=2) == [h for h in by_age if h.owner == "n2"][:2]
        assert await engine.hints(limit=1) == by_age[:1]
        assert await engine.hints(limit=0) == []
        assert await engine.hint_counts() == {"n2": 3, "n3": 1}
        # Hints live apart from the node's own data.
        assert await engine.count() == 0
        assert await engine.get(b"k1") is None

        await engine.delete_hints([h3, 10**12, h3])
        assert await engine.hint_counts() == {"n2": 2, "n3": 1}
        await engine.delete_hints([h2])
        assert await engine.hint_counts() == {"n2": 2}
        assert [h.hint_id for h in await engine.hints()] == [
            h.hint_id for h in by_age if h.hint_id in (h1, h4)
        ]
        h5 = await engine.add_hint("n3", r2, stored_at_us=50)
        assert h5 not in {h1, h2, h3, h4}
        assert (await engine.hints())[0] == Hint(h5, "n3", r2, 50)

    async def test_hinted_gives_the_newest_hint_for_owner_and_key(self, engine: Engine) -> None:
        older, newest, other = rec(b"k", b"old", 1), rec(b"k", None, 5), rec(b"k", b"x", 9)
        await engine.add_hint("n2", newest, stored_at_us=10)
        await engine.add_hint("n2", older, stored_at_us=20)  # stored later, but older
        await engine.add_hint("n3", other, stored_at_us=30)  # another owner's
        await engine.add_hint("n2", rec(b"k2", b"y", 7), stored_at_us=40)  # another key
        assert await engine.hinted("n2", b"k") == newest  # a tombstone is a version too
        assert await engine.hinted("n3", b"k") == other
        assert await engine.hinted("n4", b"k") is None
        assert await engine.hinted("n2", b"absent") is None
        assert await engine.get(b"k") is None  # hints never leak into the node's own data
        for hint in await engine.hints("n2"):
            await engine.delete_hints([hint.hint_id])
        assert await engine.hinted("n2", b"k") is None

    async def test_hint_limit_rejects_negative(self, engine: Engine) -> None:
        with pytest.raises(ValueError):
            await engine.hints(limit=-1)

    async def test_many_hints_oldest_first(self, engine: Engine) -> None:
        rng = random.Random(11)
        added: list[Hint] = []
        for i in range(200):
            owner = f"n{rng.randrange(4)}"
            r = rec(b"h%d" % i, None if i % 7 == 0 else b"v", i)
            at = rng.randrange(50)  # many equal times: ties fall back to insertion order
            added.append(Hint(await engine.add_hint(owner, r, at), owner, r, at))
        by_age = sorted(added, key=lambda h: (h.stored_at_us, h.hint_id))
        assert await engine.hints(limit=1000) == by_age
        for owner in ("n0", "n1", "n2", "n3"):
            mine = [h for h in by_age if h.owner == owner]
            assert await engine.hints(owner, limit=7) == mine[:7]
        counts: dict[str, int] = {}
        for h in added:
            counts[h.owner] = counts.get(h.owner, 0) + 1
        assert await engine.hint_counts() == counts

    # -- input checks ---------------------------------------------------------------------

    async def test_bad_input_is_rejected_and_stores_nothing(self, engine: Engine) -> None:
        good = rec(b"ok", b"v", 1)
        bad: Sequence[object] = [
            Record("str-key", b"v", Timestamp(1, 0, "n")),  # type: ignore[arg-type]
            Record(b"k", "str-value", Timestamp(1, 0, "n")),  # type: ignore[arg-type]
            Record(b"k", b"v", Timestamp(2**63, 0, "n")),
            Record(b"k", b"v", Timestamp(1, -(2**63) - 1, "n")),
            Record(b"k", b"v", Timestamp(1, 0, 5)),  # type: ignore[arg-type]
            Record(b"k", b"v", Timestamp(1, 0, "\ud800")),
        ]
        for record in bad:
            with pytest.raises((TypeError, ValueError)):
                await engine.apply(record)  # type: ignore[arg-type]
            with pytest.raises((TypeError, ValueError)):
                await engine.apply_many([good, record])  # type: ignore[list-item]
            with pytest.raises((TypeError, ValueError)):
                await engine.add_hint("n2", record, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await engine.get("str-key")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await engine.add_hint("n2", good, 2**64)
        assert await engine.count() == 0
        assert await engine.hint_counts() == {}
        assert await engine.apply(good) is True

    async def test_bad_call_fails_alone_among_concurrent_calls(self, engine: Engine) -> None:
        good = [rec(b"g%d" % i, b"v", 1) for i in range(6)]
        bad = Record(b"k", b"v", Timestamp(2**64, 0, "n"))
        await engine.apply(good[0])
        outcomes = await asyncio.gather(
            engine.apply(good[1]),
            engine.apply_many([good[2], bad, good[3]]),
            engine.apply_many([good[4], good[5]]),
            engine.get(good[0].key),
            engine.get_many([good[0].key, "str-key"]),  # type: ignore[list-item]
            engine.get_many([good[0].key, b"missing"]),
            engine.delete_hints([1, 2**70]),
            return_exceptions=True,
        )
        ok1, bad_many, ok45, got, bad_get, got_many, bad_delete = outcomes
        assert ok1 is True and ok45 == [True, True]
        assert got == good[0] and got_many == [good[0], None]
        assert isinstance(bad_many, ValueError)
        assert isinstance(bad_get, TypeError)
        assert isinstance(bad_delete, ValueError)
        expected = [good[0], good[1], None, None, good[4], good[5]]
        assert await engine.get_many([r.key for r in good]) == expected

    # -- lifecycle -----------------------------------------------------------------------

    async def test_closed_engine_raises(self, engine: Engine) -> None:
        r = rec(b"k", b"v", 1)
        await engine.apply(r)
        hint_id = await engine.add_hint("n2", r, 1)
        await engine.close()
        await engine.close()  # idempotent
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: engine.apply(r),
            lambda: engine.apply_many([r]),
            lambda: engine.apply_many([]),
            lambda: engine.get(b"k"),
            lambda: engine.get_many([b"k"]),
            lambda: engine.get_many([]),
            lambda: scan_all(engine),
            lambda: engine.count(),
            lambda: engine.purge_tombstones(1),
            lambda: engine.drop([r]),
            lambda: engine.drop([]),
            lambda: engine.add_hint("n2", r, 1),
            lambda: engine.hints(),
            lambda: engine.hints("n2"),
            lambda: engine.delete_hints([hint_id]),
            lambda: engine.delete_hints([]),
            lambda: engine.hint_counts(),
        ]
        for call in calls:
            with pytest.raises(EngineClosed):
                await call()

    async def test_scan_stops_when_closed(self, engine: Engine) -> None:
        await engine.apply_many([rec(b"k%03d" % i, b"v", 1) for i in range(50)])
        scan = engine.scan()
        first = await anext(scan)
        assert first.key == b"k000"
        await engine.close()
        with pytest.raises(EngineClosed):
            await anext(scan)

    async def test_close_waits_for_pending_writes(self, engine: Engine) -> None:
        records = [rec(b"p%03d" % i, b"v", 1) for i in range(100)]
        tasks: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(engine.apply(r)) for r in records[:50]
        ]
        tasks.append(asyncio.ensure_future(engine.apply_many(records[50:])))
        tasks.append(asyncio.ensure_future(engine.add_hint("n2", records[0], 1)))
        await asyncio.sleep(0)  # every task has now queued its call
        await engine.close()
        assert all(t.done() for t in tasks)
        results = [t.result() for t in tasks]
        assert results[:50] == [True] * 50
        assert results[50] == [True] * 50
        assert isinstance(results[51], int)

    async def test_cancelled_caller_does_not_break_engine(self, engine: Engine) -> None:
        tasks = [asyncio.ensure_future(engine.apply(rec(b"c%d" % i, b"v", 1))) for i in range(20)]
        await asyncio.sleep(0)
        for t in tasks[::2]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A cancelled write may or may not have happened; every later call still works.
        assert await engine.apply(rec(b"after", b"v", 1)) is True
        got = await engine.get_many([b"c%d" % i for i in range(1, 20, 2)])
        assert all(g is not None for g in got)

    # -- concurrency ---------------------------------------------------------------------

    async def test_concurrent_applies_all_land(self, engine: Engine) -> None:
        rng = random.Random(5)
        keys = [b"g%02d" % i for i in range(40)]
        work = [rec(k, b"%s@%d" % (k, v), v, 0, f"n{v % 3}") for k in keys for v in range(12)]
        rng.shuffle(work)
        appliers = [work[i::64] for i in range(64)]

        async def applier(mine: list[Record]) -> list[tuple[Record, bool]]:
            out = []
            for i in range(0, len(mine), 3):
                chunk = mine[i : i + 3]
                if len(chunk) == 1 or i % 2:
                    out += [(r, await engine.apply(r)) for r in chunk]
                else:
                    out += list(zip(chunk, await engine.apply_many(chunk), strict=True))
            return out

        results = [pair for part in await asyncio.gather(*map(applier, appliers)) for pair in part]
        assert len(results) == len(work)
        final: dict[bytes, Record] = {}
        for r in work:
            model_apply(final, r)
        assert await scan_all(engine) == [final[k] for k in sorted(final)]
        stored_per_key: dict[bytes, int] = {}
        for r, stored in results:
            if r == final[r.key]:
                assert stored, "the newest version of a key cannot lose"
            stored_per_key[r.key] = stored_per_key.get(r.key, 0) + stored
        assert all(stored_per_key[k] >= 1 for k in keys)

    async def test_reads_see_acknowledged_writes(self, engine: Engine) -> None:
        async def writer_reader(i: int) -> None:
            key = b"rw%d" % (i % 8)
            for v in range(10):
                r = rec(key, b"%d-%d" % (i, v), v * 100 + i, 0, f"n{i}")
                await engine.apply(r)
                got = await engine.get(key)
                assert got is not None and got.ts >= r.ts
                (again,) = await engine.get_many([key])
                assert again is not None and again.ts >= got.ts

        await asyncio.gather(*(writer_reader(i) for i in range(32)))

    # -- the property: any order, any batching, same end state as the dict model ---------

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(schedule=schedules())
    async def test_matches_dict_model(
        self,
        make_engine: MakeEngine,
        schedule: tuple[list[Record], list[list[Record]], list[bool], bool],
    ) -> None:
        original, batches, singles, concurrent = schedule
        engine = await make_engine()
        try:

            async def send(batch: list[Record], single: bool) -> list[bool]:
                if single:
                    return [await engine.apply(r) for r in batch]
                return await engine.apply_many(batch)

            if concurrent:
                await asyncio.gather(*map(send, batches, singles))
            else:
                # Sequential: the model also predicts every returned bool.
                applied: dict[bytes, Record] = {}
                for batch, single in zip(batches, singles, strict=True):
                    expected = [model_apply(applied, r) for r in batch]
                    assert await send(batch, single) == expected

            model: dict[bytes, Record] = {}
            for r in original:  # the original order: the end state must not depend on order
                model_apply(model, r)
            assert await scan_all(engine) == [model[k] for k in sorted(model)]
            assert await engine.get_many(KEYS) == [model.get(k) for k in KEYS]
            assert await engine.count() == len(model)
        finally:
            await engine.close()

    # -- digests and token ranges: what anti-entropy reads instead of scanning ----------

    async def test_entries_in_by_token_range(self, engine: Engine) -> None:
        stored = [rec(b"k%03d" % i, None if i % 5 == 0 else b"v", 10 + i) for i in range(60)]
        await engine.apply_many(stored)
        by_token = sorted(stored, key=lambda r: token(r.key))
        cut = token(by_token[20].key)
        ranges = [(0, cut), (token(by_token[40].key), TOKEN_END)]
        expected = {
            entry_of(r) for r in stored if any(lo <= token(r.key) < hi for lo, hi in ranges)
        }
        assert set(await engine.entries_in(ranges)) == expected
        assert len(expected) == 40  # 20 below the cut, 20 from the 41st on
        assert set(await engine.entries_in([(0, TOKEN_END)])) == {entry_of(r) for r in stored}
        assert await engine.entries_in([(cut, cut)]) == []
        assert await engine.entries_in([]) == []

    async def test_entries_in_rejects_bad_ranges(self, engine: Engine) -> None:
        for bad in ([(0, TOKEN_END + 1)], [(-1, 5)], [(0,)], "x", [(0.5, 1)], [(True, 2)]):
            with pytest.raises((TypeError, ValueError)):
                await engine.entries_in(bad)  # type: ignore[arg-type]

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        ops=st.lists(
            st.one_of(
                st.tuples(st.just("apply"), st.lists(records, max_size=6)),
                st.tuples(st.just("drop"), st.lists(records, max_size=3)),
                st.tuples(st.just("purge"), st.integers(0, 4)),
            ),
            max_size=25,
        )
    )
    async def test_digests_follow_every_change(
        self, make_engine: MakeEngine, ops: list[tuple[str, Any]]
    ) -> None:
        engine = await make_engine()
        try:
            if engine.digests is None:
                return  # an engine without an index: anti-entropy scans instead
            for op, arg in ops:
                if op == "apply":
                    await engine.apply_many(arg)
                elif op == "drop":
                    # drop what is stored now for half of them, so drops do happen
                    held = [r for r in await engine.get_many([r.key for r in arg]) if r]
                    await engine.drop(held[: len(held) // 2 + 1] + arg)
                else:
                    await engine.purge_tombstones(arg)
            await assert_digests_exact(engine)
        finally:
            await engine.close()
