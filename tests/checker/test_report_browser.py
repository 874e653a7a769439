"""The checker's HTML report of a failing history, opened in a real headless browser:
the first screen is the explanation (what went wrong, the failing op drawn and named,
the state before it), the whole history is behind a control, and no placeholder such
as "None" is printed. A screenshot of the first screen is kept in the test's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvstore.checker import check_history, parse_history, write_html
from tests.browser import BROWSER, NO_BROWSER, inspect, screenshot

pytestmark = pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)

REPORT_IN_BROWSER = """
const zoom = doc.getElementById("w0");
out.zoomRects = zoom ? zoom.querySelectorAll("rect").length : -1;
out.zoomBlocked = zoom ? zoom.querySelectorAll("rect.blocked").length : -1;
const named = zoom ? zoom.querySelector("text.failing") : null;
out.failingName = named ? named.textContent : null;
out.zoomTop = zoom ? zoom.getBoundingClientRect().top : 1e9;
out.zoomHeight = zoom ? zoom.getBoundingClientRect().height : 0;
out.state = (doc.querySelector("code.state") || {}).textContent;
out.why = (doc.querySelector("p.why") || {}).textContent;
const whole = doc.getElementById("p0");
out.wholeHidden = whole ? !whole.closest("details").open : null;
out.wholeRects = whole ? whole.querySelectorAll("rect").length : -1;
out.text = doc.body.innerText;
"""


def _history() -> str:
    lines = [
        '{"process": 0, "type": "invoke", "f": "write", "value": 1}',
        '{"process": 0, "type": "ok", "f": "write", "value": 1}',
        '{"process": 1, "type": "invoke", "f": "write", "value": 2}',
        '{"process": 1, "type": "ok", "f": "write", "value": 2}',
    ]
    for i in range(30):  # noise after the anomaly: reads of 2
        lines += [
            f'{{"process": {10 + i % 5}, "type": "invoke", "f": "read", "value": null}}',
            f'{{"process": {10 + i % 5}, "type": "ok", "f": "read", "value": 2}}',
        ]
    lines += [
        '{"process": 2, "type": "invoke", "f": "read", "value": null}',
        '{"process": 2, "type": "ok", "f": "read", "value": 1}',
    ]
    return "\n".join(lines) + "\n"


def test_the_report_of_a_violation_opens_on_its_explanation(tmp_path: Path) -> None:
    result = check_history(parse_history(_history()), "register")
    assert result.verdict == "not linearizable"
    page = tmp_path / "linearizability.html"
    write_html(result, page)
    shown = inspect(page, REPORT_IN_BROWSER)
    assert "error" not in shown, shown
    assert shown["zoomBlocked"] == 1  # the failing op drawn, zoomed to the window
    assert 2 <= shown["zoomRects"] <= 6  # the window, not the 33 ops of the history
    assert "p2 read" in shown["failingName"] and "cannot be linearised" in shown["failingName"]
    assert shown["zoomTop"] < 700 and shown["zoomHeight"] > 20  # on the first screen
    assert shown["state"] == "2"  # the state before the failing op
    assert "read returned 1" in shown["why"]  # the sentence on what went wrong
    assert shown["wholeHidden"] is True and shown["wholeRects"] == 33  # behind a control
    assert "None" not in shown["text"] and "line None" not in page.read_text()
    png = screenshot(page, tmp_path / "linearizability.png")
    print(f"screenshot kept: {png}")
    assert png.stat().st_size > 5000
