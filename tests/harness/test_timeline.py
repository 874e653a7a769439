"""The harness's timeline: the failing op marked and described, the failing window
outlined, one integer tick per process."""

from __future__ import annotations

from kvstore.checker import check_history, parse_history
from kvstore.harness.report import failing_ops, timeline_figure

# p1's write of 2 completes before p2 reads 1: a stale read, the read is the failing op
STALE = "\n".join(
    [
        '{"process": 0, "type": "invoke", "f": "write", "value": 1, "time": 0}',
        '{"process": 0, "type": "ok", "f": "write", "value": 1, "time": 1000000}',
        '{"process": 1, "type": "invoke", "f": "write", "value": 2, "time": 2000000}',
        '{"process": 1, "type": "ok", "f": "write", "value": 2, "time": 3000000}',
        '{"process": "nemesis", "type": "info", "f": "start", "value": null, "time": 3500000}',
        '{"process": 12, "type": "invoke", "f": "read", "value": null, "time": 4000000}',
        '{"process": 12, "type": "ok", "f": "read", "value": 1, "time": 5000000}',
    ]
)


def test_the_failing_op_is_marked_and_process_ticks_are_integers() -> None:
    history = parse_history(STALE)
    lin = check_history(history, "register")
    assert lin.verdict == "not linearizable"
    window, blocked = failing_ops(lin)
    assert [op.process for op in blocked] == [12] and {op.process for op in window} >= {1, 12}
    fig = timeline_figure(history.events, [(0.0035, 0.0045, "partition")], (window, blocked))
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["0", "1", "12"]  # one tick per process, named by its id, no 2.5
    assert list(ax.get_yticks()) == [0, 1, 2]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "failing op" in legend and "failing window" in legend
    notes = [t.get_text() for t in ax.texts]
    assert any("p12 read" in n and "ok 1" in n for n in notes), notes  # what it did
    assert "partition" in notes  # the nemesis period is named


def test_a_history_that_held_has_no_marks() -> None:
    history = parse_history(
        STALE.replace('"value": 1, "time": 5000000', '"value": 2, "time": 5000000')
    )
    lin = check_history(history, "register")
    assert lin.verdict == "linearizable" and failing_ops(lin) == ([], [])
    (ax,) = timeline_figure(history.events, [], failing_ops(lin)).axes
    assert ax.get_legend() is None
