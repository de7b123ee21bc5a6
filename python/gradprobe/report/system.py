"""The system side: utilisation over time, percentiles per node, step phases and their outliers,
and the profiler's findings with their recommendations."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..store.schema import PHASE_COLUMNS
from .data import RunData
from .downsample import envelope, step_columns
from .page import Page, Section, note, plot_text, table
from .training import findings_section

_CORE = re.compile(r"^cpu\d+$")
MAX_SYSTEM_FIGURES = 24
OUTLIER_ROWS = 15


def _pool_cores(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-core samples become one device, "cpu (each core)", so a 128-core host stays one trace."""
    frame = frame.copy()
    frame["device"] = frame["device"].where(~frame["device"].str.match(_CORE), "cpu (each core)")
    return frame


def system_section(page: Page, data: RunData) -> Section:
    samples = data.system
    if not len(samples):
        return Section("system", "System utilisation", [note("No system samples were recorded.")])
    samples = _pool_cores(samples)
    start = float(data.run.meta.get("start_time") or samples["time"].min())
    blocks = []
    metrics = sorted(set(samples["metric"]))
    for metric in metrics[:MAX_SYSTEM_FIGURES]:
        fig = go.Figure()
        for (node, device), group in samples[samples["metric"] == metric].groupby(["node", "device"], sort=True):
            if device == "cpu (each core)":
                group = group.groupby("time", as_index=False)["value"].mean()
                device = "cpu (mean of cores)"
            x, y = envelope(group["time"].to_numpy() - start, group["value"].to_numpy())
            fig.add_trace(go.Scatter(x=x.astype(np.float32), y=y.astype(np.float32), mode="lines",
                                     name=plot_text(f"{node} {device}")))
        fig.update_layout(title=plot_text(metric), xaxis_title="seconds since start")
        blocks.append(page.figure(fig, height=260))
    if len(metrics) > MAX_SYSTEM_FIGURES:
        blocks.append(note(f"{len(metrics) - MAX_SYSTEM_FIGURES} more metrics are in the percentile table only."))
    blocks += ["<h3>Percentiles per node</h3>",
               table(["node", "metric", "device", "min", "p50", "p90", "p99", "max", "samples"],
                     percentile_rows(samples), [False, False, False, True, True, True, True, True, True])]
    return Section("system", "System utilisation", blocks)


def percentile_rows(samples: pd.DataFrame) -> list[tuple[str, str, str, float, float, float, float, float, int]]:
    """(node, metric, device, min, p50, p90, p99, max, samples) over the finite values."""
    rows = []
    for (node, metric, device), group in samples.groupby(["node", "metric", "device"], sort=True):
        values = group["value"].to_numpy()
        values = values[np.isfinite(values)]
        if len(values):
            p50, p90, p99 = np.percentile(values, [50, 90, 99])
            rows.append((str(node), str(metric), str(device), float(values.min()), float(p50), float(p90),
                         float(p99), float(values.max()), len(values)))
    return rows


def phases_section(page: Page, data: RunData) -> Section:
    phases = data.phases[data.phases["mode"] == "train"] if len(data.phases) else data.phases
    if not len(phases):
        return Section("phases", "Step phases", [note("No step phases were recorded.")])
    parts = [c for c in PHASE_COLUMNS if c != "total" and phases[c].notna().any()]
    per_step = phases.groupby("step")[[*parts, "total"]].max()  # the slowest rank sets the step's pace
    columns, starts = step_columns(per_step.index.to_numpy())
    fig = go.Figure()
    for phase in parts:
        means = pd.Series(per_step[phase].to_numpy()).groupby(columns).mean().to_numpy()
        fig.add_trace(go.Bar(x=starts, y=(means * 1e3).astype(np.float32), name=phase))
    fig.update_layout(barmode="stack", title="step phases (ms, mean per column)", xaxis_title="step", bargap=0)
    blocks = [page.figure(fig)]
    totals = per_step["total"].to_numpy()
    rows = []
    for phase in [*parts, "total"]:
        values = per_step[phase].dropna().to_numpy()
        if len(values):
            share = 100 * values.sum() / np.nansum(totals) if phase != "total" else 100.0
            rows.append((phase, float(np.median(values) * 1e3), float(np.percentile(values, 90) * 1e3),
                         float(values.max() * 1e3), f"{share:.1f}%"))
    blocks += ["<h3>Phase breakdown</h3>", table(["phase", "median ms", "p90 ms", "max ms", "share of time"], rows,
                                                 [False, True, True, True, True])]
    blocks += _outliers(per_step, parts)
    return Section("phases", "Step phases", blocks)


def slow_steps(per_step: pd.DataFrame, parts: list[str]) -> list[tuple[int, float, float, str]]:
    """Steps much slower than usual (total above median + 5 MAD and above 1.5x the median), slowest
    first: (step, total ms, multiple of the median, the phase furthest above its own median)."""
    totals = per_step["total"].dropna()
    median = float(totals.median())
    mad = float((totals - median).abs().median())
    slow = totals[(totals > median + 5 * mad) & (totals > 1.5 * median)].sort_values(ascending=False)
    typical = per_step[parts].median()
    rows = []
    for step, total in zip(slow.index.to_numpy(dtype=np.int64), slow.to_numpy()):
        excess = (per_step.loc[int(step)][parts] - typical).astype(float)
        rows.append((int(step), float(total * 1e3), float(total / median),
                     str(excess.idxmax()) if excess.notna().any() else "-"))
    return rows


def _outliers(per_step: pd.DataFrame, parts: list[str]) -> list[str]:
    if per_step["total"].notna().sum() < 5:
        return [note("Too few steps to tell outliers.")]
    rows = slow_steps(per_step, parts)
    if not rows:
        median = float(per_step["total"].median())
        return ["<h3>Step outliers</h3>", note(f"No step took more than 1.5x the median ({median * 1e3:.1f} ms).")]
    return [f"<h3>Step outliers ({len(rows)} steps)</h3>",
            table(["step", "total ms", "x median", "phase above its median the most"], rows[:OUTLIER_ROWS],
                  [True, True, True, False])]


def profiler_findings_section(page: Page, data: RunData) -> Section:
    found = [f for f in data.findings if f.doc.profiler]
    return findings_section(page, found, "profiler", "Profiler findings") if found else Section(
        "profiler", "Profiler findings", [note("The profiler raised no finding.")])
