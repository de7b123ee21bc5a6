"""`gradprobe report RUN [RUN ...] [-o FILE]`: the HTML report of a run, or the comparison of several."""

from __future__ import annotations

import argparse

from . import write_report


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a run (several runs: a comparison)")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (finished or still running)")
    parser.add_argument("-o", "--out", default=None,
                        help="output file (default: RUN/report.html, or FIRST_RUN/report-compare.html)")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    path = write_report(args.runs, args.out)
    print(f"wrote {path}")
    return 0
