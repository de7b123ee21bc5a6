"""`gradprobe show RUN`: a summary of a run in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .store import Run, open_run

if TYPE_CHECKING:
    from rich.console import Console


def show_run(path: str | Path, top: int = 12) -> int:
    """Prints the summary; returns how many parts of the run could not be read."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    run = open_run(path)
    console = Console()
    meta = run.meta
    steps = run.steps()
    # Every name below comes from the user's model or run: escaped, never read as markup.
    console.print(f"[bold]{escape(str(run.path))}[/bold]  {escape(str(meta.get('model', {}).get('type', '?')))}, "
                  f"{len(meta.get('parameters', []))} parameters, status {escape(run.status)}"
                  f"{' (truncated)' if meta.get('truncated') else ''}, {len(steps)} train steps")
    scalars = run.scalars()
    if len(scalars):
        table = Table(title="scalars")
        for column in ("name", "mode", "first", "last", "min", "max", "steps"):
            table.add_column(column, justify="right" if column not in ("name", "mode") else "left")
        for (name, mode), group in scalars.groupby(["name", "mode"], sort=True):
            values = group.value.to_numpy()
            table.add_row(escape(str(name)), escape(str(mode)), f"{values[0]:.4g}", f"{values[-1]:.4g}",
                          f"{np.nanmin(values):.4g}", f"{np.nanmax(values):.4g}", str(len(values)))
        console.print(table)
    for kind in ("grad", "update", "weight", "activation"):
        stats = run.stats(kind)
        if not len(stats):
            continue
        last = stats[stats.step == stats.step.max()].sort_values("l2", ascending=False).head(top)
        table = Table(title=f"{kind} at step {int(stats.step.max())} (largest L2 first)")
        for column in ("tensor", "l2", "mean", "std", "min", "max", "zeros %", "nan", "inf"):
            table.add_column(column, justify="left" if column == "tensor" else "right")
        for row in last.itertuples(index=False):
            zeros = 100.0 * row.zeros / row.numel if row.numel else float("nan")
            table.add_row(escape(str(row.tensor)), f"{row.l2:.4g}", f"{row.mean:.3g}", f"{row.std:.3g}",
                          f"{row.min:.3g}", f"{row.max:.3g}", f"{zeros:.1f}", str(row.nans), str(row.infs))
        console.print(table)
    findings = run.events("finding")
    if findings:
        console.print(f"[bold red]{len(findings)} findings[/bold red]")
        for finding in findings[:top]:
            console.print(escape(f"  step {finding.get('step')}: [{finding.get('code')}] {finding.get('message')}"))
    return report_unreadable(run)  # on stderr: warnings, apart from the summary


def report_unreadable(run: Run, console: Console | None = None) -> int:
    """Lists the parts and event lines of the run that could not be read; returns the part count."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=True)
    unreadable = run.check_readable()
    for part, reason in sorted(unreadable.items()):
        console.print(escape(f"unreadable part skipped: {part.relative_to(run.path)}: {reason}"), style="yellow")
    if run.unreadable_event_lines:
        console.print(f"{run.unreadable_event_lines} unreadable lines skipped in events.jsonl", style="yellow")
    return len(unreadable)
