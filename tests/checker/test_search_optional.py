"""The search's handling of optional ops (no completion): their own list, tried last.

Optional ops never bound the frontier: one is callable when it was called no later than
the frontier's first return (touching intervals are concurrent), and a witness may use it
or leave it out. Trying completed ops first is an ordering choice only; these tests pin
both the semantics and the node counts that ordering buys.
"""

from __future__ import annotations

from kvstore.checker.models import KV, REGISTER, UNKNOWN
from kvstore.checker.search import LINEARIZABLE, NOT_LINEARIZABLE, Call, linearize


def _check(calls: list[Call]) -> tuple[str, list[int], int]:
    res = linearize(calls, None, REGISTER.step, REGISTER.is_readonly)
    return res.verdict, res.order, res.nodes


def test_an_optional_write_called_as_a_read_returns_can_explain_it() -> None:
    # The read returns at t=1; the optional write is called at t=1: concurrent.
    verdict, order, _ = _check(
        [Call(0, 1, ("read", None), 1), Call(1, None, ("write", 1), UNKNOWN)]
    )
    assert verdict == LINEARIZABLE
    assert order == [1, 0]


def test_an_optional_write_called_after_a_read_returned_cannot_explain_it() -> None:
    verdict, _, _ = _check([Call(0, 1, ("read", None), 1), Call(2, None, ("write", 1), UNKNOWN)])
    assert verdict == NOT_LINEARIZABLE


def test_an_optional_op_is_placed_once_at_most() -> None:
    # Two reads of 1 around a write of 2: one optional write of 1 cannot serve both.
    calls = [
        Call(0, None, ("write", 1), UNKNOWN),
        Call(1, 2, ("read", None), 1),
        Call(3, 4, ("write", 2), True),
        Call(5, 6, ("read", None), 1),
    ]
    assert _check(calls)[0] == NOT_LINEARIZABLE
    calls.append(Call(0, None, ("write", 1), UNKNOWN))  # a second one can
    verdict, order, _ = _check(calls)
    assert verdict == LINEARIZABLE
    assert sorted(order) == [0, 1, 2, 3, 4]


def test_pending_optional_writes_do_not_multiply_the_search() -> None:
    # Three timed-out writes stay callable for the whole history; 40 sequential write/read
    # pairs follow, then reads of the three values, which only the timed-out writes can
    # explain. Completed ops first finds the witness in one pass: about a node per op.
    # Trying the optional writes first (in call order) places them too early, and the
    # search then backtracks through every earlier position: 1,141 nodes here.
    calls = [Call(i, None, ("write", 100 + i), UNKNOWN) for i in range(3)]
    t = 20
    for v in range(40):
        calls.append(Call(t, t + 1, ("write", v), True))
        calls.append(Call(t + 2, t + 3, ("read", None), v))
        t += 4
    for i in range(3):
        calls.append(Call(t, t + 1, ("read", None), 100 + i))
        t += 2
    verdict, _, nodes = _check(calls)
    assert verdict == LINEARIZABLE
    assert nodes <= 2 * len(calls)


def test_kv_optional_appends_chain_to_a_read() -> None:
    # Two timed-out appends are both needed, in order, before the get: the first one's
    # value is seen by no read itself, only as a prefix of what the get returned.
    calls = [
        Call(0, None, ("append", "x"), UNKNOWN),
        Call(1, None, ("append", "y"), UNKNOWN),
        Call(2, None, ("append", "z"), UNKNOWN),  # seen by no read: never needed
        Call(3, 4, ("get", None), "xy"),
    ]
    res = linearize(calls, "", KV.step, KV.is_readonly, observers=KV.observers)
    assert res.verdict == LINEARIZABLE
    assert res.order == [0, 1, 3]
    calls[3] = Call(3, 4, ("get", None), "yx")
    res = linearize(calls, "", KV.step, KV.is_readonly, observers=KV.observers)
    assert res.verdict == LINEARIZABLE
    assert res.order == [1, 0, 3]


def test_register_optional_writes_only_for_an_op_that_sees_them() -> None:
    # The cas from 1 needs the timed-out write of 1; the write of 7 is seen by no op.
    calls = [
        Call(0, None, ("write", 7), UNKNOWN),
        Call(1, None, ("write", 1), UNKNOWN),
        Call(2, 3, ("cas", (1, 2)), True),
        Call(4, 5, ("read", None), 2),
    ]
    res = linearize(calls, None, REGISTER.step, REGISTER.is_readonly, observers=REGISTER.observers)
    assert res.verdict == LINEARIZABLE
    assert res.order == [1, 2, 3]
    # A failed cas from None sees any other value: the write of 7 is then what explains it.
    calls[2] = Call(2, 3, ("cas", (None, 2)), False)
    calls[3] = Call(4, 5, ("read", None), 7)
    res = linearize(calls, None, REGISTER.step, REGISTER.is_readonly, observers=REGISTER.observers)
    assert res.verdict == LINEARIZABLE
    assert res.order[-1] == 3


def test_a_failed_node_prunes_the_nodes_that_only_placed_more_optional_ops() -> None:
    # Six triangles of timed-out cas ops lead from 0 back to 0 (0 -> b -> c -> 0), and
    # reads see every value; a final read of 99 can never fit. Reaching the same
    # completed ops and state with more of the optional ops placed can do no more than a
    # node that failed with fewer: without that pruning the search takes 766 nodes.
    calls: list[Call] = []
    for j in range(6):
        b, c = 10 * j + 1, 10 * j + 2
        calls += [
            Call(0, None, ("cas", (0, b)), UNKNOWN),
            Call(0, None, ("cas", (b, c)), UNKNOWN),
            Call(0, None, ("cas", (c, 0)), UNKNOWN),
        ]
    t = 1
    for j in range(6):
        for value in (10 * j + 1, 10 * j + 2, 0):
            calls.append(Call(t, t + 1, ("read", None), value))
            t += 2
    calls.append(Call(t, t + 1, ("read", None), 99))
    res = linearize(calls, 0, REGISTER.step, REGISTER.is_readonly, observers=REGISTER.observers)
    assert res.verdict == NOT_LINEARIZABLE
    assert res.nodes <= 300
