"""The one place the workflows write the HTML report: a failed report is a warning, since the
training it describes has finished and its run directory is intact."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..report import write_report


def write_report_if_available(run_dir: Path) -> Path | None:
    """RUN/report.html; None (with a warning) when it could not be written."""
    try:
        return write_report(run_dir)
    except Exception as error:
        warnings.warn(f"gradprobe: the report of {run_dir} could not be written: {error!r}", RuntimeWarning,
                      stacklevel=2)
        return None
