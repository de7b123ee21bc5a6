"""The HTML report: one self-contained file (plotly.js embedded once, no network request) that shows
what happened in a run, or compares several runs. Works on a run still being written."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from ..store import Run
from .compare import compare_page
from .data import load, open_runs
from .page import SectionFailure
from .single import run_page

REPORT_FILE = "report.html"
COMPARE_FILE = "report-compare.html"

RunLike = str | Path | Run


def write_report(runs: RunLike | Sequence[RunLike], out: str | Path | None = None) -> Path:
    """Writes the report of one run, or the comparison of several, and returns its path.

    out: default <run>/report.html, or for several runs <first run>/report-compare.html.
    A section that fails to draw is a note in the page and one RuntimeWarning naming the failed
    sections, issued after the file is written.
    """
    target, failures = write_report_sections(runs, out)
    if failures:
        warnings.warn(failures_message(target, failures), RuntimeWarning, stacklevel=2)
    return target


def write_report_sections(runs: RunLike | Sequence[RunLike],
                          out: str | Path | None = None) -> tuple[Path, list[SectionFailure]]:
    """write_report, returning the sections that failed (each shown as a note) instead of warning."""
    opened = open_runs(runs if isinstance(runs, (str, Path, Run)) else list(runs))
    loaded = [load(run) for run in opened]
    page = run_page(loaded[0]) if len(loaded) == 1 else compare_page(loaded)
    target = Path(out) if out is not None else opened[0].path / (REPORT_FILE if len(loaded) == 1 else COMPARE_FILE)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(page.html(), encoding="utf-8")
    tmp.replace(target)  # a browser refreshing a live report never reads half a file
    return target, list(page.failures)


def failures_message(target: Path, failures: Sequence[SectionFailure]) -> str:
    return (f"gradprobe: {target} was written without {len(failures)} section(s), each replaced by a note: "
            + "; ".join(f.line() for f in failures))


def write_report_or_warn(run_dir: str | Path) -> Path | None:
    """RUN/report.html at the end of a training (callbacks, workflows): None, with a warning, when it
    could not be written, since the training it describes has finished and its run is intact."""
    try:
        return write_report(Path(run_dir))
    except Exception as error:
        warnings.warn(f"gradprobe: the report of {run_dir} could not be written: {error!r}", RuntimeWarning,
                      stacklevel=2)
        return None


def report(run: RunLike, out: str | Path | None = None) -> Path:
    """The report of one run (the same as Run.report())."""
    return write_report(run, out)


__all__ = ["COMPARE_FILE", "REPORT_FILE", "SectionFailure", "report", "write_report", "write_report_or_warn",
           "write_report_sections"]
