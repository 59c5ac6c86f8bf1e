"""The service worker's offline shell lists every file the dashboard page loads.

A file missing from ``SHELL`` in static/sw.js would load while the gateway is up and then break
the page on a reload without it (the browser tests only see the files they happen to touch).
"""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[4] / "consumers" / "gateway" / "static"


def _shell() -> set[str]:
    text = (STATIC / "sw.js").read_text()
    match = re.search(r"const SHELL = \[(.*?)\];", text, re.S)
    assert match is not None
    return set(re.findall(r'"([^"]+)"', match.group(1)))


def _loaded() -> set[str]:
    """The page, what index.html links, and every module the scripts import."""
    found = {"/"}
    index = (STATIC / "index.html").read_text()
    found |= set(re.findall(r'(?:src|href)="(/static/[^"]+)"', index))
    for script in STATIC.glob("*.js"):
        if script.name == "sw.js":
            continue
        for name in re.findall(r'from "\./([^"]+)"', script.read_text()):
            found.add(f"/static/{name}")
    return found


def test_the_offline_shell_holds_every_file_the_page_loads() -> None:
    loaded = _loaded()
    assert {"/static/app.js", "/static/privacy.js", "/static/offline.js",
            "/static/vendor/chart.umd.min.js"} <= loaded
    assert _shell() == loaded


def test_every_shell_file_exists() -> None:
    for path in _shell() - {"/"}:
        assert (STATIC / path.removeprefix("/static/")).is_file(), path
