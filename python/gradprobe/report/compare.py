"""The comparison of several runs: losses, metrics and chosen layers' norms overlaid, and the
findings that not every run raised."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from .data import OWN_SCALAR_PREFIX, RunData, on_train_axis
from .downsample import envelope
from .findings import differing
from .page import Page, Section, note, plot_text, table, text
from .summary import final_metrics
from .tensors import chosen_layers

MAX_OVERLAID = 12


def compare_page(runs: Sequence[RunData]) -> Page:
    names = _labels(runs)
    page = Page("gradprobe comparison: " + " vs ".join(names), f"{len(runs)} runs")
    page.add_section("runs", "Runs", lambda: _runs_section(runs, names))
    page.add_section("findings", "Findings that differ", lambda: _findings_section(runs, names))
    page.add_section("losses", "Losses and metrics", lambda: _scalars_section(page, runs, names))
    page.add_section("layers", "Chosen layers' gradient norms", lambda: _norms_section(page, runs, names))
    return page


def _labels(runs: Sequence[RunData]) -> list[str]:
    labels = [r.name for r in runs]
    if len(set(labels)) < len(labels):  # same directory names: fall back to full paths
        labels = [str(r.run.path) for r in runs]
    return labels


def _runs_section(runs: Sequence[RunData], names: list[str]) -> Section:
    blocks = []
    for data, name in zip(runs, names):
        blocks += [f"<h3>{text(name)}</h3>", *final_metrics(data)]
    return Section("runs", "Runs", blocks)


def _findings_section(runs: Sequence[RunData], names: list[str]) -> Section:
    rows = [(code, mode, ", ".join(tensors[:4]) or "-", *["-" if s is None else s for s in steps])
            for (code, mode, tensors), steps in differing([r.findings for r in runs])]
    if not rows:
        return Section("findings", "Findings that differ", [note("Every run raised the same findings.")])
    return Section("findings", "Findings that differ",
                   [note("First step of each finding not raised by every run ('-': not raised)."),
                    table(["rule", "mode", "tensors", *names], rows, [False, False, False] + [True] * len(names))])


def _scalars_section(page: Page, runs: Sequence[RunData], names: list[str]) -> Section:
    scalar_names = sorted({n for r in runs for n in r.scalars["name"] if not n.startswith(OWN_SCALAR_PREFIX)})
    blocks = []
    for scalar in scalar_names[:MAX_OVERLAID]:
        fig = go.Figure()
        for data, name in zip(runs, names):
            rows = data.scalars[data.scalars["name"] == scalar]
            rows = rows.assign(x=on_train_axis(rows) if len(rows) else rows["step"])
            for mode, group in rows.groupby("mode", sort=True):
                x, y = envelope(group["x"].to_numpy(), group["value"].to_numpy())
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=plot_text(f"{name} {mode}")))
        fig.update_layout(title=plot_text(scalar), xaxis_title="step")
        blocks.append(page.figure(fig, height=300))
    if not blocks:
        blocks.append(note("No run recorded losses or metrics."))
    return Section("losses", "Losses and metrics", blocks)


def _norms_section(page: Page, runs: Sequence[RunData], names: list[str]) -> Section:
    common = set.intersection(*(set(r.stats.loc[r.stats["kind"] == "grad", "tensor"]) for r in runs))
    layers = [t for t in chosen_layers(runs[0], count=len(runs[0].tensor_order)) if t in common][:4]
    blocks = []
    for layer in layers:
        fig = go.Figure()
        for data, name in zip(runs, names):
            rows = data.stats[(data.stats["kind"] == "grad") & (data.stats["tensor"] == layer)
                              & (data.stats["mode"] == "train") & data.stats["present"]]
            x, y = envelope(rows["step"].to_numpy(), rows["l2"].to_numpy())
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=plot_text(name)))
        fig.update_layout(title=plot_text(f"gradient L2 norm of {layer}"), xaxis_title="step", yaxis_type="log")
        blocks.append(page.figure(fig, height=300))
    if not blocks:
        blocks.append(note("The runs share no gradient-recorded layer."))
    return Section("layers", "Chosen layers' gradient norms", blocks)
