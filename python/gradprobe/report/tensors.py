"""Per-tensor sections: layer x step heatmaps of gradient and weight norms and the update/weight
ratio, exponent histograms over time with the float16/bfloat16 ranges, activation health and
non-finite origins."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..stats import HIST_BINS, HIST_EXP_MAX, HIST_EXP_MIN
from .data import RunData
from .downsample import column_max, step_columns
from .page import Page, Section, note, plot_text, table

# (label, log2 of the smallest subnormal, of the smallest normal, of the largest finite value)
FLOAT_RANGES = (("float16", -24.0, -14.0, float(np.log2(65504.0))),
                ("bfloat16", -133.0, -126.0, float(np.log2(3.3895313892515355e38))))
HIST_LAYERS = 4
SATURATION = 4.0  # as SaturatedActivation's default: tanh'(4) ~ 1e-3


def heatmap(page: Page, frame: pd.DataFrame, order: Sequence[str], value: np.ndarray, title: str,
            colorbar: str, share: bool = False) -> str:
    """Layer (model order, first on top) x step-column grid of the largest value per cell."""
    stored = set(frame["tensor"].unique())
    layers = [t for t in order if t in stored]
    rows = pd.Index(layers).get_indexer(frame["tensor"])
    columns, starts = step_columns(frame["step"].to_numpy())
    grid = column_max(columns, rows, value, (len(layers), len(starts)))
    fig = go.Figure(go.Heatmap(z=grid.astype(np.float32), x=starts, y=[plot_text(n) for n in layers],
                               colorscale="Viridis", colorbar={"title": colorbar},
                               zmin=0.0 if share else None, zmax=1.0 if share else None,
                               hovertemplate="step %{x}<br>%{y}<br>%{z:.3g}<extra></extra>"))
    fig.update_layout(title=plot_text(title), xaxis_title="step", yaxis={"autorange": "reversed", "type": "category"})
    return page.figure(fig, height=min(1400, max(300, 90 + 16 * len(layers))))


def layers_section(page: Page, data: RunData) -> Section:
    train = data.stats[(data.stats["mode"] == "train") & data.stats["present"]]
    blocks = []
    for kind, title in (("grad", "gradient L2 norm (log10)"), ("weight", "weight L2 norm (log10)")):
        rows = train[train["kind"] == kind]
        if len(rows):
            with np.errstate(divide="ignore"):
                blocks.append(heatmap(page, rows, data.tensor_order, np.log10(rows["l2"].to_numpy()), title, "log10"))
        else:
            blocks.append(note(f"No {kind} statistics were recorded."))
    rows = train[(train["kind"] == "update") & train["ratio"].notna()]
    if len(rows):
        with np.errstate(divide="ignore"):
            blocks.append(heatmap(page, rows, data.tensor_order, np.log10(rows["ratio"].to_numpy()),
                                  "update / weight ratio (log10; ~-3 is typical)", "log10"))
    else:
        blocks.append(note("No update/weight ratios were recorded (the update collection was off)."))
    return Section("layers", "Layers: gradient and weight norms, update ratio", blocks)


def chosen_layers(data: RunData, kind: str = "grad", count: int = HIST_LAYERS) -> list[str]:
    """The layers worth a closer look: those findings name, then the largest and smallest norms."""
    rows = data.stats[(data.stats["kind"] == kind) & data.stats["present"]]
    stored = set(rows["tensor"].unique())
    available = [t for t in data.tensor_order if t in stored]
    named = [t for f in data.findings for t in f.tensors if t in available]
    peak = rows.groupby("tensor", observed=True)["l2"].max().reindex(available).dropna().sort_values()
    ranked = list(peak.index[::-1][:1]) + list(peak.index[:1])
    return list(dict.fromkeys([*named, *ranked, *available]))[:count]


def histograms_section(page: Page, data: RunData) -> Section:
    blocks = []
    for layer in chosen_layers(data):
        steps, counts = data.hist("grad", layer)
        if not len(steps):
            continue
        if not counts.any():  # nothing finite and non-zero to place on a magnitude axis
            blocks.append(note(_no_magnitudes(data, layer, len(steps))))
            continue
        blocks.append(_histogram_figure(page, layer, steps, counts))
    if not blocks:
        return Section("histograms", "Magnitude histograms", [note("No gradient histograms were recorded.")])
    bins = (f"Exact zeros, NaN and Inf are not in the histograms. The bottom bin holds 0 < |x| < 2^{HIST_EXP_MIN}; "
            f"the top one |x| >= 2^{HIST_EXP_MAX}. Shaded: float16's normal range, hatched lines its subnormal limit; "
            "bfloat16's limits are drawn where they fall on the axis and otherwise lie beyond it (bfloat16 spans "
            "2^-133 .. 2^128).")
    return Section("histograms", "Magnitude histograms over time", [note(bins), *blocks])


def _histogram_figure(page: Page, layer: str, steps: np.ndarray, counts: np.ndarray) -> str:
    """The share of a layer's gradient elements per power of two, step columns on x."""
    exponents = np.arange(HIST_BINS) + HIST_EXP_MIN - 1  # bin i holds |x| in [2^(e), 2^(e+1)), e = this
    columns, starts = step_columns(steps)
    # steps are sorted, so each column's rows are contiguous: one reduceat, not a scatter-add
    summed = np.add.reduceat(counts, np.flatnonzero(np.diff(columns, prepend=-1))).astype(np.float64)
    shares = summed / np.maximum(summed.sum(axis=1, keepdims=True), 1)
    used = np.flatnonzero(shares.any(axis=0))  # not empty: the caller checked that some count is non-zero
    lo = int(min(exponents[used].min(), -26)) - 2
    hi = int(max(exponents[used].max(), 17)) + 2
    keep = (exponents >= lo) & (exponents <= hi)
    with np.errstate(divide="ignore"):
        z = np.log10(shares[:, keep].T)
    z[np.isneginf(z)] = np.nan
    fig = go.Figure(go.Heatmap(z=z.astype(np.float32), x=starts, y=exponents[keep], colorscale="Magma",
                               colorbar={"title": "log10 share"},
                               hovertemplate="step %{x}<br>|x| ~ 2^%{y}<br>log10 share %{z:.2f}<extra></extra>"))
    _mark_ranges(fig, lo, hi)
    fig.update_layout(title=plot_text(f"gradient magnitudes of {layer} (log2 |x|)"), xaxis_title="step",
                      yaxis_title="log2 |x|", yaxis_range=[lo, hi])
    return page.figure(fig, height=420)


def _no_magnitudes(data: RunData, layer: str, steps: int) -> str:
    """Why a chosen layer has no histogram: its gradient was all zero (dead units, a frozen path), or
    held nothing but zeros, NaN and Inf."""
    rows = data.stats[(data.stats["kind"] == "grad") & (data.stats["tensor"] == layer)
                      & (data.stats["mode"] == "train")]
    nans, infs = int(rows["nans"].sum()), int(rows["infs"].sum())
    if nans == 0 and infs == 0:
        return f"gradient of {layer}: all zero at each of its {steps} recorded steps (no magnitude to show)."
    return (f"gradient of {layer}: no finite non-zero value at any of its {steps} recorded steps "
            f"({int(rows['zeros'].sum()):,} zeros, {nans:,} NaN, {infs:,} Inf).")


def _mark_ranges(fig: go.Figure, lo: int, hi: int) -> None:
    name, subnormal, normal, largest = FLOAT_RANGES[0]
    fig.add_hrect(y0=normal, y1=largest, fillcolor="#22c55e", opacity=0.12, line_width=0,
                  annotation_text="float16 normal range", annotation_position="top left")
    fig.add_hline(y=subnormal, line={"dash": "dash", "color": "#16a34a"}, annotation_text="float16 smallest subnormal")
    fig.add_hline(y=largest, line={"color": "#16a34a"}, annotation_text="float16 max")
    name, subnormal, normal, largest = FLOAT_RANGES[1]
    for value, label in ((subnormal, "smallest subnormal"), (normal, "smallest normal"), (largest, "max")):
        if lo <= value <= hi:
            fig.add_hline(y=value, line={"dash": "dot", "color": "#2563eb"}, annotation_text=f"{name} {label}")


def activations_section(page: Page, data: RunData) -> Section:
    acts = data.stats[(data.stats["kind"] == "activation") & (data.stats["mode"] == "train") & data.stats["present"]]
    blocks = []
    outputs = acts[~acts["tensor"].str.contains(":input", regex=False)]
    if len(outputs):
        dead = outputs["zeros"].to_numpy() / np.maximum(outputs["numel"].to_numpy(), 1)
        blocks.append(heatmap(page, outputs, data.tensor_order, dead, "dead fraction: share of exact zeros in "
                              "module outputs", "share", share=True))
    inputs = acts[acts["tensor"].str.contains(":input", regex=False)]
    if len(inputs):
        blocks.append(_saturation(page, data, inputs))
    if not blocks:
        blocks.append(note("No activation statistics were recorded (the activation collection was off)."))
    blocks += nonfinite_blocks(data)
    return Section("activations", "Activation health and non-finite origins", blocks)


def _saturation(page: Page, data: RunData, inputs: pd.DataFrame) -> str:
    first_bin = int(np.floor(np.log2(SATURATION))) - HIST_EXP_MIN + 1
    parts = []
    for tensor in sorted(set(inputs["tensor"].unique())):
        steps, counts = data.hist("activation", tensor)
        if len(steps):
            share = counts[:, first_bin:].sum(axis=1) / np.maximum(counts.sum(axis=1), 1)
            parts.append(pd.DataFrame({"step": steps, "tensor": tensor, "share": share}))
    if not parts:
        return note("Activation inputs were recorded without histograms: no saturation shares.")
    frame = pd.concat(parts, ignore_index=True)
    return heatmap(page, frame, data.tensor_order, frame["share"].to_numpy(),
                   f"saturation: share of module inputs with |x| >= {SATURATION:g}", "share", share=True)


def nonfinite_blocks(data: RunData) -> list[str]:
    """Where NaN/Inf first appeared, per kind: activations in execution order, gradients in backward
    order (the last in model order), as the NonFinite rule reads them."""
    bad = data.stats[(data.stats["nans"] + data.stats["infs"]) > 0]
    if not len(bad):
        return ["<h3>Non-finite values</h3>", note("No NaN or Inf was recorded in any tensor.")]
    rows = []
    for (mode, kind), group in bad.groupby(["mode", "kind"], sort=True, observed=True):
        first = int(group["step"].min())
        at_first = group[group["step"] == first]
        origin = at_first.iloc[-1] if kind == "grad" else at_first.iloc[0]
        rows.append((kind, mode, first, origin["tensor"], int(origin["nans"]), int(origin["infs"]), len(at_first),
                     int(group["step"].nunique())))
    return ["<h3>Non-finite values: first appearance</h3>",
            table(["kind", "mode", "first step", "origin", "NaN", "Inf", "tensors affected then", "steps affected"],
                  rows, [False, False, True, False, True, True, True, True])]
