"""Opens a report in headless Chromium (Debian's package) and says what happened: page and console
errors, requests that tried to leave the file, plots drawn, the visible text, a screenshot."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
    screenshot: Path | None = None


def render(report: Path, screenshot: Path) -> Rendered:
    from playwright.sync_api import sync_playwright

    result = Rendered()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda error: result.errors.append(f"page error: {error}"))
            page.on("console", lambda message: result.errors.append(f"console: {message.text}")
                    if message.type == "error" else None)
            page.on("dialog", lambda dialog: (result.dialogs.append(dialog.message), dialog.dismiss()))

            def route(request_route):  # type: ignore[no-untyped-def]
                url = request_route.request.url
                if url.startswith("file://") and Path(url.removeprefix("file://")) == report.resolve():
                    request_route.continue_()
                else:
                    result.outside_requests.append(url)
                    request_route.abort()

            page.route("**/*", route)
            page.goto(report.resolve().as_uri(), wait_until="load")
            page.wait_for_function("document.querySelectorAll('div.gp-plot').length === "
                                   "document.querySelectorAll('div.gp-plot .main-svg').length / 2 || "
                                   "document.readyState === 'complete'")
            page.wait_for_timeout(300)
            result.plots = page.locator("div.gp-plot").count()
            result.plots_drawn = page.evaluate(
                "Array.from(document.querySelectorAll('div.gp-plot')).filter(d => d.querySelector('svg.main-svg')"
                " && d.querySelector('.plot-container') && d._fullLayout).length")
            result.body_text = page.inner_text("body")
            page.screenshot(path=str(screenshot), full_page=True)
            result.screenshot = screenshot
        finally:
            browser.close()
    return result
