"""The ledger: rows pooled from a cell's runs, and the page ``--matrix`` writes."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from kvstore.cli import main
from kvstore.harness.ledger import row, write_ledger
from tests.browser import BROWSER, NO_BROWSER, inspect


def _results(verdict: str, reads: int, stale: int, ok: int, fail: int) -> dict[str, Any]:
    return {
        "promise": "no-stale-reads",
        "verdict": verdict,
        "staleness": {"reads": reads, "stale_reads": stale},
        "ops": {"ok": ok, "fail": fail},
        "latency_ms": {"read": {"p50": 1.0, "p99": 4.0}, "write": {"p50": 2.0, "p99": 8.0}},
        "pbs": {"predicted": {"available": True, "p_stale_read": 0.1}},
    }


def test_a_row_pools_its_runs() -> None:
    r = row(
        "one", "kill", [_results("held", 100, 10, 90, 10), _results("violated", 300, 10, 290, 10)]
    )
    assert (r.runs, r.held, r.verdict) == (2, 1, "violated in 1")
    assert r.stale_rate == 0.05  # 20 of 400, not the mean of 0.1 and 0.033
    assert r.availability == 0.95  # 380 of 400
    assert r.predicted_stale == 0.1 and r.read_ms == (1.0, 4.0) and r.write_ms == (2.0, 8.0)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None


def test_values_are_escaped(tmp_path: Path) -> None:
    evil = row("<script>", "kill", [_results("held", 1, 0, 1, 0)])
    page = write_ledger(tmp_path / "l.html", [evil], "t").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_sim_matrix_writes_the_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--matrix", "--seeds", "0", "--time-limit", "2", "--store", str(tmp_path)])
    assert code in (0, 1)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ledger: "))
    page = _Page()
    page.feed(Path(line.removeprefix("ledger: ")).read_text())
    header, *rows = page.rows
    assert header[0] == "setting" and "stale reads (PBS)" in header
    assert len(rows) == 16  # 4 settings x 4 nemeses
    by_setting = {(r[0], r[1]): r for r in rows}
    assert by_setting[("linearizable", "kill")][6] == "-"  # PBS does not model ABD
    assert by_setting[("quorum", "kill")][6] == "0"  # R + W > N: predicted fresh
    assert page.images and page.images[0].startswith("data:image/png;base64,")


LEDGER_IN_BROWSER = """
const table = doc.getElementById("ledger");
out.rows = table ? table.querySelectorAll("tbody tr").length : -1;
out.header = table ? [...table.querySelectorAll("thead th")].map(th => th.textContent) : [];
out.tableHeight = table ? table.getBoundingClientRect().height : 0;
const plot = doc.getElementById("plot");
out.plot = plot ? [plot.naturalWidth, plot.naturalHeight, plot.complete] : null;
out.scripts = doc.querySelectorAll("script").length;
"""


@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_the_ledger_renders_its_table_and_plot_in_a_real_browser(tmp_path: Path) -> None:
    rows = [
        row(setting, nemesis, [_results("held", 100, 3, 90, 10)])
        for setting in ("one", "quorum", "<b>bold</b>")
        for nemesis in ("kill", "partition")
    ]
    shown = inspect(write_ledger(tmp_path / "ledger.html", rows, "t"), LEDGER_IN_BROWSER)
    assert "error" not in shown, shown
    assert shown["rows"] == 6 and shown["tableHeight"] > 50
    assert shown["header"][0] == "setting"
    width, height, complete = shown["plot"]
    assert complete and width > 100 and height > 100  # the PNG decoded, not a broken image
    assert shown["scripts"] == 0  # an escaped setting name stayed text
