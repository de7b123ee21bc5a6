"""Runs built once per session (training them is most of these tests' time) and one browser."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from .browser import Viewer, chromium_path
from .runs import HOSTILE_METRIC, HostileNames, add_profile, train


@dataclass(frozen=True)
class Runs:
    healthy: Path  # with system samples and step phases
    nan: Path  # a NaN in the input batch of step 15
    hostile: Path  # module and metric names that are HTML
    planted_cpu: dict[str, np.ndarray]  # the healthy run's host CPU samples per node


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    base = tmp_path_factory.mktemp("report-runs")
    healthy = train(base / "healthy")
    planted_cpu = add_profile(healthy)
    return Runs(healthy, train(base / "nan", nan_at=15),
                train(base / "hostile", steps=12, model=HostileNames(), metric=HOSTILE_METRIC), planted_cpu)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def viewer(browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    """One page for the tests that open many reports (the scenario matrix, the degenerate runs)."""
    opened = Viewer(browser, tmp_path_factory.mktemp("viewer"))  # type: ignore[arg-type]
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $GRADPROBE_TEST_ARTIFACTS when set (CI keeps them), else the test's tmp dir."""
    target = Path(os.environ.get("GRADPROBE_TEST_ARTIFACTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def screenshot_to() -> Callable[[str], Path | None]:
    """For the many-report tests: a screenshot path only where $GRADPROBE_TEST_ARTIFACTS is set (a
    full-page screenshot costs about a second a report)."""
    folder = os.environ.get("GRADPROBE_TEST_ARTIFACTS")

    def path(name: str) -> Path | None:
        if not folder:
            return None
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"

    return path
