"""Opens a report in headless Chromium (Debian's package) and says what happened: page and console
errors, requests that tried to leave the file, plots drawn, the visible text, a screenshot."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str:
    """The Chromium binary, or a skip naming what is missing."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    found = shutil.which("chromium") or next((p for p in CHROMIUM_PATHS if os.path.exists(p)), None)
    if found is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's `chromium`)")
    return found


@dataclass
class Rendered:
    errors: list[str] = field(default_factory=list)  # page errors and console errors
    outside_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    plots: int = 0
    plots_drawn: int = 0
    body_text: str = ""
    tick_labels: list[str] = field(default_factory=list)  # y ticks and legend entries, as drawn
    heatmap_rows: list[list[str]] = field(default_factory=list)
    screenshot: Path | None = None


def render(browser: Browser, report: Path, screenshot: Path | None = None) -> Rendered:
    """Loads the report with every request outside the file refused and recorded."""
    result = Rendered()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.on("pageerror", lambda error: result.errors.append(f"page error: {error}"))
        page.on("console", lambda message: result.errors.append(f"console: {message.text}")
                if message.type == "error" else None)
        page.on("dialog", lambda dialog: (result.dialogs.append(dialog.message), dialog.dismiss()))

        def route(request_route: Route) -> None:
            url = request_route.request.url
            if url == report.resolve().as_uri():
                request_route.continue_()
            else:
                result.outside_requests.append(url)
                request_route.abort()

        page.route("**/*", route)
        page.goto(report.resolve().as_uri(), wait_until="load")
        result.plots = page.locator("div.gp-plot").count()
        # Plotly draws synchronously in newPlot; a drawn plot has its SVG and its laid-out axes.
        result.plots_drawn = page.evaluate(
            "Array.from(document.querySelectorAll('div.gp-plot'))"
            ".filter(d => d._fullLayout && d.querySelector('svg.main-svg .cartesianlayer')).length")
        result.tick_labels = page.evaluate(
            "Array.from(document.querySelectorAll('.gp-plot .ytick text, .gp-plot .legendtext'))"
            ".map(t => t.textContent)")
        # The rows of each layer heatmap, top to bottom as drawn (the axis is reversed: first on top).
        result.heatmap_rows = page.evaluate(
            "Array.from(document.querySelectorAll('div.gp-plot')).filter(d => d.data[0].type === 'heatmap'"
            " && typeof d.data[0].y[0] === 'string').map(d => d._fullLayout.yaxis.range[0] > d._fullLayout.yaxis.range[1]"
            " ? Array.from(d.data[0].y) : Array.from(d.data[0].y).reverse())")
        result.body_text = page.inner_text("body")
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
            result.screenshot = screenshot
    finally:
        page.close()
    return result
