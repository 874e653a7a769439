"""Open a page in a real headless browser (Debian's chromium) and report what it shows.

``scripts/setup.sh`` installs ``chromium-headless-shell`` when run as root; elsewhere
``BROWSER`` is None and the tests that need it skip with ``NO_BROWSER``. The page is
loaded in a frame of a small wrapper page whose script inspects the rendered document
(rows laid out, images decoded) and writes its findings as JSON into the wrapper,
which the browser prints (``--dump-dom``). The browser is one short-lived process,
killed on timeout.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
NO_BROWSER = (
    "no headless browser (Debian's chromium-headless-shell; scripts/setup.sh installs it as root)"
)

_WRAPPER = """<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="page" src="{src}" style="width:1400px;height:1000px"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {{
  const doc = document.getElementById("page").contentDocument;
  const out = {{}};
  try {{ {script} }} catch (e) {{ out.error = String(e); }}
  document.getElementById("out").textContent = JSON.stringify(out);
}});
</script></body></html>"""


def _browse(profile: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """One headless browser run with its own throwaway profile; killed on timeout."""
    assert BROWSER is not None, NO_BROWSER
    return subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",  # as root the sandbox refuses to start
            "--disable-gpu",
            f"--user-data-dir={profile}/profile",
            "--virtual-time-budget=10000",  # let the page's scripts run before output
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def inspect(page: Path, script: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Run ``script`` (JavaScript with ``doc``, the page's document, and ``out``, an
    object to fill) once ``page`` has loaded; returns ``out``."""
    assert BROWSER is not None, NO_BROWSER
    with tempfile.TemporaryDirectory(prefix="kvbrowser-") as tmp:
        wrapper = Path(tmp) / "inspect.html"
        wrapper.write_text(_WRAPPER.format(src=page.resolve().as_uri(), script=script))
        done = _browse(
            tmp,
            # the wrapper reads its frame's page
            ["--allow-file-access-from-files", "--dump-dom", wrapper.as_uri()],
            timeout_s,
        )
    found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
    if found is None or found.group(1) == "pending":
        raise AssertionError(
            f"the browser showed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
        )
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def screenshot(page: Path, png: Path, size: str = "1400,1000", timeout_s: float = 60.0) -> Path:
    """The page's first screen as a PNG (``size`` is width,height in pixels)."""
    assert BROWSER is not None, NO_BROWSER
    with tempfile.TemporaryDirectory(prefix="kvbrowser-") as tmp:
        _browse(
            tmp,
            [
                "--hide-scrollbars",
                f"--window-size={size}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            timeout_s,
        )
    if not png.is_file() or png.read_bytes()[:4] != b"\x89PNG":
        raise AssertionError(f"the browser made no screenshot of {page}")
    return png
