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
    from playwright.sync_api import Browser, Page, Route

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
SECTIONS = ("Summary", "Findings", "Losses and metrics", "Layers", "Magnitude histograms", "Activation health",
            "System utilisation", "Step phases", "Profiler findings")
FAILED_SECTION = "could not be drawn"  # the note a section that raised leaves (report/page.py)


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


VIEWPORT = {"width": 1400, "height": 1000}


def render(browser: Browser, report: Path, screenshot: Path | None = None) -> Rendered:
    """Loads the report in a new page with every request outside the file refused and recorded."""
    page = browser.new_page(viewport=VIEWPORT)
    try:
        return _WatchedPage(page, report.resolve().as_uri()).open(screenshot)
    finally:
        page.close()


class Viewer:
    """One page that opens report after report from one fixed path. Chromium then compiles the
    embedded plotly.js once, not once per report (about 1.5 s a report on two cores); each report
    is still a fresh document, loaded and drawn in full."""

    def __init__(self, browser: Browser, folder: Path) -> None:
        self._path = folder.resolve() / "report.html"
        self._page = browser.new_page(viewport=VIEWPORT)
        self._watched = _WatchedPage(self._page, self._path.as_uri())

    def render(self, report: Path, screenshot: Path | None = None) -> Rendered:
        shutil.copyfile(report, self._path)
        return self._watched.open(screenshot)

    def close(self) -> None:
        self._page.close()


class _WatchedPage:
    """A page whose script errors, dialogs and requests for anything but `url` are recorded into
    the result of the current open()."""

    def __init__(self, page: Page, url: str) -> None:
        self.page, self.url, self.result = page, url, Rendered()
        page.on("pageerror", lambda error: self.result.errors.append(f"page error: {error}"))
        page.on("console", lambda message: self.result.errors.append(f"console: {message.text}")
                if message.type == "error" else None)
        page.on("dialog", lambda dialog: (self.result.dialogs.append(dialog.message), dialog.dismiss()))
        page.route("**/*", self._route)

    def _route(self, request_route: Route) -> None:
        url = request_route.request.url
        if url == self.url:
            request_route.continue_()
        else:
            self.result.outside_requests.append(url)
            request_route.abort()

    def open(self, screenshot: Path | None) -> Rendered:
        self.result = result = Rendered()
        page = self.page
        page.goto(self.url, wait_until="load")
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
        return result


def problems(rendered: Rendered) -> list[str]:
    """What is wrong with a rendered run report: script errors, requests, dialogs, undrawn plots,
    missing sections, sections replaced by their failure note. Empty when it opened cleanly."""
    found = [*rendered.errors, *(f"request left the file: {url}" for url in rendered.outside_requests),
             *(f"dialog: {message}" for message in rendered.dialogs)]
    if rendered.plots_drawn != rendered.plots:
        found.append(f"{rendered.plots - rendered.plots_drawn} of {rendered.plots} plots not drawn")
    found += [f"section {title!r} missing" for title in SECTIONS if title not in rendered.body_text]
    if FAILED_SECTION in rendered.body_text:
        found.append("a section was replaced by its failure note")
    return found
