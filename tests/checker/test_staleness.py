"""Staleness figures on small hand-built histories whose answers are worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kvstore.checker import Event, analyse_staleness, parse_history
from kvstore.checker.history import pair_operations
from kvstore.checker.staleness import percentile


def _ops(spec: Sequence[tuple[int, str, object, int, int, str]], key: str = "x") -> list[Event]:
    """(process, f, value, start, end, status) -> events in time order."""
    evs: list[tuple[int, int, Event]] = []
    for n, (p, f, v, start, end, status) in enumerate(spec):
        inv_val = None if f == "read" else v
        evs.append((start, n, Event(p, "invoke", f, inv_val, key=key, time=start)))
        evs.append((end, n, Event(p, status, f, v, key=key, time=end)))
    return [e for _, _, e in sorted(evs, key=lambda t: (t[0], t[1]))]


HISTORY_A = [
    (0, "write", 1, 0, 10, "ok"),
    (1, "read", 1, 20, 30, "ok"),  # fresh
    (0, "write", 2, 40, 50, "ok"),
    (1, "read", 1, 60, 70, "ok"),  # stale: misses write 2 (k=1)
    (2, "read", 2, 80, 90, "ok"),  # fresh
    (1, "read", 2, 100, 110, "ok"),  # fresh
    (0, "write", 3, 120, 130, "ok"),
    (2, "read", 1, 140, 150, "ok"),  # stale, misses 2 and 3 (k=2); p2 went backwards
    (1, "read", 3, 160, 170, "ok"),  # fresh
]


def test_stale_reads_k_and_t_visibility() -> None:
    rep = analyse_staleness(pair_operations(_ops(HISTORY_A)))
    assert rep.reads == 6 and rep.writes == 3
    assert dict(rep.k_staleness) == {0: 4, 1: 1, 2: 1}
    assert [(s.read.call_time, s.versions_behind) for s in rep.stale_reads] == [(60, 1), (140, 2)]
    assert rep.stale_reads[1].newest_missed.input == 3
    # write 1: nobody misses it; write 2 (done at 50) missed by a read begun at 140;
    # write 3 (done at 130) missed by the read begun at 140.
    assert sorted(rep.t_visibility_ns) == [0, 10, 90]
    pct = rep.t_visibility_percentiles_ms()
    assert pct["p50"] == pytest.approx(10 / 1e6) and pct["max"] == pytest.approx(90 / 1e6)
    assert rep.lost_writes == []
    assert [(v.process, v.read.call_time) for v in rep.monotonic_read_violations] == [(2, 140)]
    assert rep.read_your_writes_violations == []
    assert rep.unexplained_reads == []


HISTORY_B = [
    (3, "read", None, 5, 8, "ok"),  # initial value, concurrent with write 1: fresh
    (0, "write", 1, 0, 10, "ok"),
    (1, "write", 2, 20, 30, "ok"),  # acknowledged but lost (e.g. an older timestamp)
    (1, "read", 1, 40, 50, "ok"),  # p1 does not see its own write
    (2, "read", 1, 60, 70, "ok"),
    (2, "read", 7, 80, 90, "ok"),  # nobody wrote 7
    (4, "write", 9, 95, 96, "fail"),  # did not happen: not a write
]


def test_lost_writes_read_your_writes_and_unexplained() -> None:
    rep = analyse_staleness(pair_operations(_ops(HISTORY_B)))
    assert rep.writes == 2 and rep.reads == 4
    assert [o.input for o in rep.lost_writes] == [2]
    assert [
        (v.process, v.earlier.input, v.read.call_time) for v in rep.read_your_writes_violations
    ] == [(1, 2, 40)]
    assert rep.monotonic_read_violations == []
    assert dict(rep.k_staleness) == {0: 1, 1: 2}
    assert [o.output for o in rep.unexplained_reads] == [7]
    assert rep.t_visibility_ns == [0]  # the lost write is not in the distribution


def test_reading_the_initial_value_after_a_write_is_stale() -> None:
    rep = analyse_staleness(
        pair_operations(_ops([(0, "write", 1, 0, 10, "ok"), (1, "read", None, 20, 30, "ok")]))
    )
    assert dict(rep.k_staleness) == {1: 1}
    assert rep.stale_reads[0].source is None
    assert [o.input for o in rep.lost_writes] == [1]


def test_info_write_may_be_the_source_and_concurrent_writes_are_not_older() -> None:
    rep = analyse_staleness(
        pair_operations(
            _ops(
                [
                    (0, "write", 1, 0, 100, "info"),  # unknown outcome, may land late
                    (1, "write", 2, 10, 20, "ok"),
                    (2, "read", 1, 30, 40, "ok"),  # could be the info write: not stale
                    (3, "write", 3, 50, 70, "ok"),
                    (4, "read", 2, 60, 80, "ok"),  # concurrent with write 3: not stale
                ]
            )
        )
    )
    assert rep.stale_reads == []
    assert dict(rep.k_staleness) == {0: 2}


def test_keys_are_independent() -> None:
    events = _ops([(0, "write", 1, 0, 10, "ok")], key="a") + _ops(
        [(1, "read", None, 20, 30, "ok")], key="b"
    )
    rep = analyse_staleness(pair_operations(sorted(events, key=lambda e: e.time or 0)))
    assert rep.stale_reads == [] and dict(rep.k_staleness) == {0: 1}


def test_needs_times() -> None:
    h = parse_history(
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\tnil\n"
    )
    with pytest.raises(ValueError, match="time"):
        analyse_staleness(h)


def test_percentile_nearest_rank() -> None:
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile([5, 1, 3, 2, 4], 100) == 5
    assert percentile([5, 1, 3, 2, 4], 1) == 1


def test_a_write_superseded_later_is_still_lost_if_a_read_missed_it() -> None:
    # 2 loses to 1 (say, an older write with a higher timestamp): the next read returns
    # 1; a later write 3 supersedes both. 2 was never read: it was lost.
    rep = analyse_staleness(
        pair_operations(
            _ops(
                [
                    (0, "write", 1, 0, 10, "ok"),
                    (1, "write", 2, 20, 30, "ok"),
                    (2, "read", 1, 40, 50, "ok"),
                    (0, "write", 3, 60, 70, "ok"),
                    (2, "read", 3, 80, 90, "ok"),
                ]
            )
        )
    )
    assert [o.input for o in rep.lost_writes] == [2]
    assert [s.newest_missed.input for s in rep.stale_reads] == [2]


def test_an_unread_write_that_no_read_missed_is_not_lost() -> None:
    rep = analyse_staleness(
        pair_operations(
            _ops(
                [
                    (0, "write", 1, 0, 10, "ok"),
                    (0, "write", 2, 20, 30, "ok"),  # overwritten by 3 before anyone read
                    (1, "write", 3, 25, 35, "ok"),
                    (2, "read", 3, 40, 50, "ok"),
                ]
            )
        )
    )
    assert rep.lost_writes == []
