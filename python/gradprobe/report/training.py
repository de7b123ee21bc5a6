"""The findings section (timeline and table, each finding explained and linked to its plots) and the
losses and metrics over steps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .data import OWN_SCALAR_PREFIX, RunData, on_train_axis
from .downsample import envelope
from .findings import ShownFinding
from .page import Page, Raw, Section, note, plot_text, table, text

SEVERITY_COLOURS = {"critical": "#7f1d1d", "error": "#dc2626", "warning": "#d97706", "info": "#2563eb"}
MAX_METRIC_FIGURES = 12
MAX_FINDING_MARKS = 60


def findings_section(page: Page, findings: Sequence[ShownFinding], anchor: str = "findings",
                     title: str = "Findings", scalar_names: frozenset[str] = frozenset()) -> Section:
    if not findings:
        return Section(anchor, title, [note("No rule fired on this run.")])
    fig = go.Figure()
    for severity in sorted({f.severity for f in findings}):
        shown = [f for f in findings if f.severity == severity]
        fig.add_trace(go.Scatter(
            x=[f.step for f in shown], y=[plot_text(f"{f.code} {f.rule}") for f in shown], mode="markers",
            name=plot_text(severity), marker={"size": 11, "color": SEVERITY_COLOURS.get(severity, "#555")},
            hovertext=[plot_text(f"step {f.step} ({f.mode}): {f.message[:300]}") for f in shown],
            hoverinfo="text"))
    fig.update_layout(title="findings over steps", xaxis_title="step")
    rows = []
    for f in findings:
        tensors = ", ".join(f.tensors[:4]) + (f" (+{len(f.tensors) - 4})" if len(f.tensors) > 4 else "")
        evidence = ", ".join(f"{k}={v:.4g}" for k, v in f.evidence.items())
        explain = f.doc.why + (f" Typical causes: {f.doc.causes}" if f.doc.causes else "")
        rows.append((f.step, f.mode, Raw(f'<span class="sev-{text(f.severity)}">{text(f.severity)}</span>'),
                     f"{f.code} {f.rule}", f.message, tensors, evidence, explain or "-", f.doc.tries or "-",
                     Raw(f'<a href="#{text(_section(f, scalar_names))}">plots</a>')))
    return Section(anchor, title, [page.figure(fig, height=max(220, 60 + 28 * len({f.code for f in findings}))),
                                   table(["step", "mode", "severity", "rule", "message", "tensors", "evidence",
                                          "why it matters", "what to try", "see"], rows,
                                         [True] + [False] * 9)])


def _section(finding: ShownFinding, scalar_names: frozenset[str]) -> str:
    """Where the evidence is drawn: the rule family's section, or the losses for a finding about
    scalars only (NonFinite on a loss)."""
    if finding.tensors and all(t in scalar_names for t in finding.tensors):
        return "losses"
    return finding.doc.section


def losses_section(page: Page, data: RunData) -> Section:
    user = data.scalars[~data.scalars["name"].str.startswith(OWN_SCALAR_PREFIX)]
    if not len(user):
        return Section("losses", "Losses and metrics", [note("No losses or metrics were recorded.")])
    names = sorted(set(user["name"]))
    losses = [n for n in names if "loss" in n.lower()]
    others = [n for n in names if n not in losses]
    blocks = []
    if losses:
        fig = _scalar_figure(user, losses, "losses")
        _mark_findings(fig, data.findings)
        blocks.append(page.figure(fig))
    for name in others[:MAX_METRIC_FIGURES]:
        blocks.append(page.figure(_scalar_figure(user, [name], name), height=280))
    if len(others) > MAX_METRIC_FIGURES:
        blocks.append(note(f"{len(others) - MAX_METRIC_FIGURES} more scalars are not plotted: "
                           + ", ".join(others[MAX_METRIC_FIGURES:])))
    return Section("losses", "Losses and metrics", blocks)


def _scalar_figure(scalars: pd.DataFrame, names: Sequence[str], title: str) -> go.Figure:
    fig = go.Figure()
    chosen = scalars[scalars["name"].isin(names)]
    chosen = chosen.assign(x=on_train_axis(chosen) if len(chosen) else chosen["step"])
    for (name, mode), group in chosen.groupby(["name", "mode"], sort=True):
        x, y = envelope(group["x"].to_numpy(), group["value"].to_numpy())
        fig.add_trace(go.Scatter(x=x, y=y.astype(np.float32), name=plot_text(f"{name} ({mode})"),
                                   mode="lines+markers" if mode != "train" or len(x) < 50 else "lines"))
    fig.update_layout(title=plot_text(title), xaxis_title="training step (evaluations at the step they followed)")
    return fig


def _mark_findings(fig: go.Figure, findings: Sequence[ShownFinding]) -> None:
    """Dotted lines at the first steps findings were raised, so the loss can be read against them."""
    for step in sorted({f.step for f in findings})[:MAX_FINDING_MARKS]:
        fig.add_vline(x=step, line={"dash": "dot", "color": "#dc2626", "width": 1})
