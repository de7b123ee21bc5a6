"""The one place the workflows call the HTML report (gradprobe.report), which may not be installed yet."""

from __future__ import annotations

import importlib
from pathlib import Path


def write_report_if_available(run_dir: Path) -> Path | None:
    """RUN/report.html (or wherever gradprobe.report.write_report puts it); None without that module."""
    try:
        report = importlib.import_module("gradprobe.report")
    except ImportError:
        return None
    return Path(report.write_report(run_dir))
