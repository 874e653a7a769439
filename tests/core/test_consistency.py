"""Consistency levels: names, presets, and impossible levels rejected."""

from __future__ import annotations

import pytest

from kvstore.core.consistency import CallOptions, Defaults, resolve, resolve_count
from kvstore.errors import InvalidArgument

DEFAULTS = Defaults(n=3, r=2, w=2, sloppy=True, read_repair="off", timeout_ms=1000)


@pytest.mark.parametrize(
    ("spec", "n", "expected"),
    [
        ("one", 3, 1),
        ("two", 3, 2),
        ("three", 3, 3),
        ("quorum", 3, 2),
        ("quorum", 5, 3),
        ("quorum", 4, 3),
        ("all", 5, 5),
        (2, 3, 2),
        ("QUORUM", 3, 2),
        ("3", 3, 3),
    ],
)
def test_levels(spec: int | str, n: int, expected: int) -> None:
    assert resolve_count(spec, n) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (4, "between 1 and 3"),
        (0, "between 1 and 3"),
        (-1, "between 1 and 3"),
        ("most", "not a level"),
        ("", "not a level"),
        (True, "boolean"),
        (1.5, "float"),
    ],
)
def test_bad_levels_name_the_problem(spec: object, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        resolve_count(spec, 3, "r")  # type: ignore[arg-type]


def test_presets_and_defaults() -> None:
    assert resolve(CallOptions(), DEFAULTS).r == 2
    one = resolve(CallOptions(consistency="one"), DEFAULTS)
    assert (one.r, one.w) == (1, 1)
    lin = resolve(CallOptions(consistency="linearizable"), DEFAULTS)
    assert lin.linearizable and not lin.sloppy and (lin.r, lin.w) == (2, 2)
    assert resolve(CallOptions(r="all", sloppy=False), DEFAULTS).r == 3


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (CallOptions(consistency="strong"), "not one of"),
        (CallOptions(consistency="one", r=1), "either"),
        (CallOptions(consistency="linearizable", sloppy=True), "strict"),
        (CallOptions(read_repair="sometimes"), "read_repair"),
        (CallOptions(timeout_ms=0), "timeout"),
        (CallOptions(w=7), "N=3"),
    ],
)
def test_impossible_calls(call: CallOptions, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        resolve(call, DEFAULTS)
