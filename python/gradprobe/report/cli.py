"""`gradprobe report RUN [RUN ...] [-o FILE]`: the HTML report of a run, or the comparison of several."""

from __future__ import annotations

import argparse
import sys

from . import write_report_sections


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a run (several runs: a comparison)")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (finished or still running)")
    parser.add_argument("-o", "--out", default=None,
                        help="output file (default: RUN/report.html, or FIRST_RUN/report-compare.html)")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Exit 0 when the file is written, even with sections replaced by notes: those are named on stderr."""
    path, failures = write_report_sections(args.runs, args.out)
    print(f"wrote {path}")
    for failure in failures:
        print(f"gradprobe report: {failure.line()}; shown as a note in the page", file=sys.stderr)
    return 0
