"""The summary section: model, data, hyperparameters, duration, steps, final metrics, overhead."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .data import OVERHEAD_SCALAR, OWN_SCALAR_PREFIX, RunData
from .page import Section, note, table, text


def summary_section(data: RunData) -> Section:
    meta = data.run.meta
    params = [p for p in meta.get("parameters", []) if isinstance(p, dict)]
    numel = sum(int(np.prod(p.get("shape") or [1])) for p in params)
    trainable = sum(int(np.prod(p.get("shape") or [1])) for p in params if p.get("requires_grad", True))
    facts: list[tuple[str, object]] = [
        ("run", data.run.path), ("status", data.run.status + (" (truncated)" if meta.get("truncated") else "")),
        ("model", model_type(meta)),
        ("parameters", f"{numel:,} in {len(params)} tensors ({trainable:,} trainable)"),
    ]
    for key in ("data", "dataset", "task"):
        if key in meta:
            facts.append((key, _flat(meta[key])))
    for optimizer in meta.get("optimizers", []):
        groups = optimizer.get("param_groups", [])
        facts.append((f"optimizer {optimizer.get('type', '?')}", "; ".join(_flat(g) for g in groups) or "-"))
    if "hyperparameters" in meta:
        facts.append(("hyperparameters", _flat(meta["hyperparameters"])))
    config = meta.get("config", {})
    if isinstance(config, dict) and config.get("preset"):
        facts.append(("gradprobe preset", config["preset"]))
    start, end = meta.get("start_time"), meta.get("end_time")
    if isinstance(start, (int, float)):
        stamp = dt.datetime.fromtimestamp(start, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        span = (end if isinstance(end, (int, float)) else _last_time(data)) - start
        facts.append(("started", stamp))
        facts.append(("duration", _duration(span) + ("" if isinstance(end, (int, float)) else " so far")))
    steps = {str(mode): int(group["step"].max()) + 1 for mode, group in data.scalars.groupby("mode")}
    facts.append(("steps", ", ".join(f"{mode} {n:,}" for mode, n in sorted(steps.items())) or "none recorded"))
    facts.append(("overhead", _overhead(data)))
    hardware = meta.get("hardware", {})
    if hardware:
        facts.append(("hardware", _flat(hardware)))
    versions = meta.get("versions", {})
    if versions:
        facts.append(("versions", _flat(versions)))
    blocks = ["<dl>" + "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in facts) + "</dl>"]
    blocks += final_metrics(data)
    return Section("summary", "Summary", blocks)


def model_type(meta: Mapping[str, Any]) -> str:
    """The model's class name, "?" where meta.json has none (a run that attached to nothing)."""
    model = meta.get("model")
    return str(model.get("type", "?")) if isinstance(model, Mapping) else "?"


def final_metrics(data: RunData) -> list[str]:
    user = data.scalars[~data.scalars["name"].str.startswith(OWN_SCALAR_PREFIX)]
    if not len(user):
        return [note("No losses or metrics were recorded.")]
    rows = []
    for (name, mode), group in user.groupby(["name", "mode"], sort=True):
        values = group["value"].to_numpy()
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (math.nan, math.nan)
        rows.append((name, mode, int(group["step"].iloc[-1]), float(values[-1]), low, high))
    return ["<h3>Final losses and metrics</h3>",
            table(["name", "mode", "last step", "last", "min", "max"], rows, [False, False, True, True, True, True])]


def _overhead(data: RunData) -> str:
    own = data.scalars[(data.scalars["name"] == OVERHEAD_SCALAR) & (data.scalars["mode"] == "train")]
    if not len(own):
        return "not recorded"
    per_step = float(np.nanmedian(own["value"].to_numpy()))
    times = np.sort(data.scalars[data.scalars["mode"] == "train"].groupby("step")["time"].min().to_numpy())
    step_ms = float(np.median(np.diff(times))) * 1e3 if len(times) > 2 else math.nan
    share = f", {100 * per_step / step_ms:.1f}% of the median step ({step_ms:.1f} ms)" if step_ms > 0 else ""
    threads = (data.run.meta.get("cost") or {}).get("other_threads_cpu_ms_per_step")
    others = (f"; {float(threads):.2f} ms of CPU per step on gradprobe's other threads"
              if isinstance(threads, (int, float)) and math.isfinite(threads) else "")
    return f"median {per_step:.2f} ms per step on the training thread{share}{others}"


def _last_time(data: RunData) -> float:
    return float(data.scalars["time"].max()) if len(data.scalars) else float("nan")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_flat(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
