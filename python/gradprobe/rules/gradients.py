"""Gradient magnitude rules: vanishing, exploding, and low-precision range."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..records import ScalarRecord, StatsRecord
from ..stats._layout import HIST_EXP_MIN
from .base import BatchRecord, Finding, Rule, Severity, per_row, same_rows_runs
from .recent import RecentValues

_TOTAL = ("<total>",)  # the total gradient norm's name in the state


@dataclass
class VanishingGradient(Rule):
    """Layers whose gradients vanished while the loss is still high, for `patience` recorded steps
    in a row. A layer's gradient scale is its mean |g| over the non-zero entries (an embedding's
    gradient is mostly exact zeros by construction: only the rows of the batch's tokens get one).
    It has vanished when that scale is below `peer_ratio` x the largest layer's at the same step, or
    below `history_ratio` x the layer's own median over its first `history` recorded
    steps, or below `threshold`; and the layer is not moving: its last update/weight ratio (from
    the updates collection, when recorded) is below `max_update_ratio`. Adam-family optimizers
    move weights by the learning rate whatever |g| is, so a layer that moves is learning.

    When the training loss is below `converged_fraction` of its median over the first 5 steps, small
    gradients mean the model memorised or converged: that is reported once, as info, with its own
    message, not as vanishing.
    Why: layers whose gradients vanished stop learning; in deep stacks the early layers go first.
    Typical causes: saturating activations (sigmoid, tanh) in deep nets, tiny initialisation,
    missing residual connections or normalisation, a learning-rate schedule that decayed to zero.
    Try: ReLU/GELU, He/Xavier initialisation, normalisation layers, residual connections.
    Reports the layers and the step they vanished (each layer once). Biases are left out by
    default (`exclude`): some are structurally ~0, e.g. attention key biases, whose gradient is
    zero because softmax ignores a constant added to every key. All-zero gradients are AllZero's.
    """

    code = "GP101"
    default_severity = Severity.ERROR
    stats_kinds = frozenset({"grad", "update"})
    peer_ratio: float = 1e-5
    history_ratio: float = 1e-3
    history: int = 10
    threshold: float = 1e-10
    max_update_ratio: float = 1e-6
    patience: int = 2
    converged_fraction: float = 0.01
    loss: str = "loss"
    exclude: tuple[str, ...] = (r"bias$",)  # regexes over tensor names
    _layers: LayerState = field(init=False, repr=False)  # per layer: early scales, streak, movement, report
    _included_cache: tuple[Any, np.ndarray] = field(default=(None, np.zeros(0, bool)), repr=False, compare=False)
    _early_loss: list[float] = field(default_factory=list, repr=False)
    _last_loss: float = math.nan
    _converged_reported: int = -1

    def __post_init__(self) -> None:
        self._layers = LayerState(self.history)

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        value = record.values.get(self.loss)
        if record.mode == "train" and value is not None and math.isfinite(value):
            if len(self._early_loss) < 5:
                self._early_loss.append(float(value))
            self._last_loss = float(value)
        return []

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        layers = self._layers
        if record.kind == "update" and record.ratio is not None:
            rows = per_row(record)
            rows = rows[np.isfinite(record.ratio[rows])]
            at = layers.rows(record.names)[rows]  # first: rows() may grow (rebind) layers.moving
            layers.moving[at] = record.ratio[rows]
            return []
        if record.kind != "grad":
            return []
        rows = per_row(record)
        rows = rows[self._included(record.names)[rows]]
        nonzero = record.stats.finite[rows] - record.stats.zeros[rows]
        rows, nonzero = rows[nonzero > 0], nonzero[nonzero > 0]
        if not len(rows):
            return []
        scale = record.stats.l1[rows] / nonzero
        peers = float(np.max(scale))
        at = layers.rows(record.names)[rows]
        own = layers.early_median(at, scale)  # 0 until a layer's first `history` scales are in
        vanished = (scale < self.peer_ratio * peers) | (scale < self.history_ratio * own) | (scale < self.threshold)
        moving = layers.moving[at] > self.max_update_ratio
        layers.streak[at] = np.where(vanished & ~moving, layers.streak[at] + 1, 0)
        low = (layers.streak[at] >= self.patience) & (layers.reported[at] < 0)
        if not low.any():
            return []
        names = [record.names[i] for i in rows[low]]
        worst = float(np.min(scale[low]))
        early_loss = float(np.median(self._early_loss)) if self._early_loss else math.nan
        if abs(self._last_loss) <= self.converged_fraction * abs(early_loss):
            if self._converged_reported >= 0:
                return []
            self._converged_reported = record.step
            return [dataclasses.replace(self.finding(
                record.step, record.mode,
                f"gradients of {_describe(names)} are ~0 at step {record.step} because the training {self.loss} "
                f"is ~0 ({self._last_loss:.3g}, from {early_loss:.3g} in the first steps): the model memorised or "
                f"converged on its training data; this is not a vanishing-gradient problem. Next: watch the "
                f"validation loss for overfitting, or stop here", names, smallest_mean_abs=worst,
                loss=self._last_loss), severity=Severity.INFO if self.severity is None else self.severity)]
        layers.reported[at[low]] = record.step
        still = f" while the {self.loss} is still {self._last_loss:.3g}" if math.isfinite(self._last_loss) else ""
        return [self.finding(record.step, record.mode,
                             f"gradients of {_describe(names)} vanished at step {record.step}: mean |g| "
                             f"{worst:.3g}, against {peers:.3g} in the layer with the largest, and the weights barely "
                             "move"
                             f"{still}. Next: check for saturating "
                             f"activations (sigmoid/tanh) or a tiny initialisation below these layers; use "
                             f"ReLU/GELU, normalisation or residual connections", names,
                             smallest_mean_abs=worst, peers=peers, layers=len(names))]

    # The state keeps its earlier JSON form (layer name -> values).
    def state_dict(self) -> dict[str, Any]:
        return {**self._layers.state(), "_early_loss": list(self._early_loss), "_last_loss": self._last_loss,
                "_converged_reported": self._converged_reported}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = set(state) - {"_early", "_early_median", "_streak", "_moving", "_reported", "_early_loss",
                                "_last_loss", "_converged_reported"}
        if unknown:
            raise KeyError(f"{self.name}: unknown state key {sorted(unknown)[0]!r}")
        self._layers = LayerState(self.history)
        self._layers.load(state)
        self._early_loss = [float(v) for v in state.get("_early_loss", [])]
        self._last_loss = float(state.get("_last_loss", math.nan))
        self._converged_reported = int(state.get("_converged_reported", -1))

    def _included(self, names: Sequence[str]) -> np.ndarray:
        """Whether each name escapes `exclude`; worked out once per names object (reused every step)."""
        seen, mask = self._included_cache
        if seen is not names:
            mask = np.array([not any(re.search(p, n) for p in self.exclude) for n in names], bool)
            self._included_cache = (names, mask)
        return mask


@dataclass
class ExplodingGradient(Rule):
    """A layer's gradient norm above `max_norm`, or above `growth` times its baseline; or the total
    gradient norm above `total_growth` times its baseline for `confirm` steps in a row. A baseline
    is the median over the last `window` steps, but at least `floor_fraction` of the highest such
    median seen so far: as a loss converges its gradients shrink by orders of magnitude, and one
    hard batch bringing them back to their earlier level is no explosion.

    The norms are those before clipping (the probe takes gradients before clip_grad_norm_), so
    clipping does not hide a blow-up.
    Why: exploding gradients make updates overshoot; they usually end in NaN.
    Typical causes: a learning rate too large, no gradient clipping, bad initialisation,
    a loss scale that is too large under fp16, an unstable architecture (deep RNNs).
    Try: lower the learning rate, clip gradients (clip_grad_norm_), warm up the learning rate.
    """

    code = "GP102"
    default_severity = Severity.ERROR
    max_norm: float = 1e3
    growth: float = 100.0
    total_growth: float = 10.0
    confirm: int = 2
    window: int = 10
    floor_fraction: float = 0.5
    _recent: RecentValues = field(init=False, repr=False)  # each tensor's recent norms and highest median
    _recent_total: RecentValues = field(init=False, repr=False)  # the same for the total norm
    _total_above: int = 0

    def __post_init__(self) -> None:
        self._recent = RecentValues(self.window)
        self._recent_total = RecentValues(self.window)

    stats_kinds = frozenset({"grad"})

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "grad":
            return []
        return self._steps([record], per_row(record))

    def on_records(self, records: Sequence[BatchRecord]) -> list[Finding]:
        """Runs of steps with the same tensors present go through at once (exactly as one by one)."""
        found: list[Finding] = []
        for run, rows in same_rows_runs([r for r in records if isinstance(r, StatsRecord) and r.kind == "grad"]):
            found += self._steps(run, rows)
        return found

    def _steps(self, records: Sequence[StatsRecord], rows: np.ndarray) -> list[Finding]:
        names = records[0].names
        norms = np.stack([record.stats.l2[rows] for record in records])  # (steps, tensors)
        with np.errstate(invalid="ignore"):
            too_large = np.isfinite(norms) & (norms > self.max_norm)
        factors = self._recent.growth_steps(self._recent.rows(names)[rows], norms, self.growth, self.floor_fraction)
        finite = np.where(np.isfinite(norms), norms, 0.0)
        totals = np.sqrt(np.sum(finite ** 2, axis=1)) if len(rows) else np.full(len(records), math.nan)
        total_factors = self._recent_total.growth_steps(self._recent_total.rows(_TOTAL), totals[:, None],
                                                        self.total_growth, self.floor_fraction)[:, 0]
        found = []
        for k, record in enumerate(records):
            if too_large[k].any():
                hit = rows[too_large[k]]
                names_hit = [names[i] for i in hit]
                largest = float(np.max(record.stats.l2[hit]))
                found.append(self.finding(record.step, record.mode,
                                          f"gradient norm of {_describe(names_hit)} is {largest:.3g} at step "
                                          f"{record.step} (above {self.max_norm:g}). Next: lower the learning rate or "
                                          f"clip gradients (clip_grad_norm_)", names_hit, largest_norm=largest))
            grown = ~np.isnan(factors[k])
            if grown.any():
                names_grown = [names[i] for i in rows[grown]]
                most = float(np.max(factors[k][grown]))
                found.append(self.finding(record.step, record.mode,
                                          f"gradient norm of {_describe(names_grown)} grew {most:.0f}x "
                                          f"its recent level at step {record.step}. Next: "
                                          f"lower the learning rate or clip gradients (clip_grad_norm_)", names_grown,
                                          growth=most))
            factor, total = float(total_factors[k]), float(totals[k])
            self._total_above = self._total_above + 1 if not math.isnan(factor) else 0
            if self._total_above == self.confirm:
                found.append(self.finding(record.step, record.mode,
                                          f"total gradient norm (before clipping) is {total:.3g} at step "
                                          f"{record.step}, {factor:.0f}x its recent level, for "
                                          f"{self.confirm} steps in a row. Next: lower the learning rate; clipping "
                                          f"bounds the step, not the cause", (), total_norm=total,
                                          growth=float(factor or 0.0)))
        return found

    # The state keeps its earlier JSON form: tensor (and "<total>") -> recent norms, -> highest median.
    def state_dict(self) -> dict[str, Any]:
        return {"_history": {**self._recent.history_state(), **self._recent_total.history_state()},
                "_peak": {**self._recent.peak_state(), **self._recent_total.peak_state()},
                "_total_above": self._total_above}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = set(state) - {"_history", "_peak", "_total_above"}
        if unknown:
            raise KeyError(f"{self.name}: unknown state key {sorted(unknown)[0]!r}")
        history, peak = dict(state.get("_history", {})), dict(state.get("_peak", {}))
        total = _TOTAL[0]
        self._recent_total.load({k: v for k, v in history.items() if k == total},
                                {k: v for k, v in peak.items() if k == total})
        self._recent.load({k: v for k, v in history.items() if k != total},
                          {k: v for k, v in peak.items() if k != total})
        self._total_above = int(state.get("_total_above", 0))


@dataclass
class LowPrecisionRange(Rule):
    """Share of gradient values that would underflow or overflow in float16 / bfloat16 at the
    current loss scale, read from the exponent histogram.

    Why: under mixed precision, values below the format's smallest subnormal become 0 and
    values above its maximum become Inf: learning silently stops in those weights, or steps are
    skipped. No other tool measures this before it happens.
    Typical causes: a loss scale too small (underflow) or too large (overflow), gradients that
    shrink during training, layers with very different gradient scales.
    Try: dynamic loss scaling (GradScaler), bfloat16 instead of float16, per-layer scaling.
    """

    code = "GP103"
    dtype: str = "float16"
    max_underflow: float = 0.05  # share of non-zero values
    max_overflow: float = 1e-6
    _scale: float = 1.0

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        if "loss_scale" in record.values and record.values["loss_scale"] > 0:
            self._scale = float(record.values["loss_scale"])
        return []

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "grad" or record.stats.hist is None:
            return []
        # Smallest positive subnormal and largest finite value, as binary exponents.
        low_exp, high_exp = (-24, 16) if self.dtype == "float16" else (-133, 128)
        shift = int(math.floor(math.log2(self._scale))) if self._scale > 0 else 0
        bins = np.arange(record.stats.hist.shape[1])
        exponent = bins - 1 + HIST_EXP_MIN  # bin j holds |x| in [2^e, 2^(e+1)) with e = j - 1 + HIST_EXP_MIN
        scaled = exponent + shift
        under = (scaled < low_exp) | (bins == 0)
        over = (scaled >= high_exp) | (bins == len(bins) - 1)
        hist = record.stats.hist[per_row(record)]
        total = hist.sum()
        if total == 0:
            return []
        under_share = hist[:, under].sum() / total
        over_share = hist[:, over].sum() / total
        found = []
        if under_share > self.max_underflow:
            found.append(self.finding(record.step, record.mode,
                                      f"{100 * under_share:.1f}% of gradient values would underflow to 0 in "
                                      f"{self.dtype} at loss scale {self._scale:g} at step {record.step}: those "
                                      f"weights stop learning. Next: use dynamic loss scaling (GradScaler) or a "
                                      f"larger scale, or bfloat16", (), underflow_share=under_share))
        if over_share > self.max_overflow:
            found.append(self.finding(record.step, record.mode,
                                      f"{100 * over_share:.2g}% of gradient values would overflow in {self.dtype} "
                                      f"at loss scale {self._scale:g} at step {record.step}: those steps would be "
                                      f"skipped or turn to Inf. Next: lower the loss scale (GradScaler adjusts it) or "
                                      f"use bfloat16", (), overflow_share=over_share))
        return found


class LayerState:
    """VanishingGradient's memory of each layer, one NumPy row per name: its first `history` scales
    and their median, its streak of vanished steps, its last update/weight ratio and the step it was
    reported at; updated for all layers of a record at once (no Python per layer)."""

    def __init__(self, history: int) -> None:
        self.history = history
        self._row: dict[str, int] = {}
        self._names_seen: tuple[Sequence[str] | None, np.ndarray] = (None, np.zeros(0, np.int64))
        self.early = np.zeros((0, history))
        self.early_count = np.zeros(0, np.int64)
        self.median = np.full(0, np.nan)  # NaN until the first `history` scales are in
        self.streak = np.zeros(0, np.int64)
        self.moving = np.zeros(0)
        self.reported = np.zeros(0, np.int64)  # -1: not reported

    def rows(self, names: Sequence[str]) -> np.ndarray:
        seen, rows = self._names_seen
        if seen is names:
            return rows
        new = [n for n in dict.fromkeys(names) if n not in self._row]
        if new:
            start = len(self._row)
            self._row.update((n, start + k) for k, n in enumerate(new))
            k = len(new)
            self.early = np.vstack([self.early, np.zeros((k, self.history))])
            self.early_count = np.concatenate([self.early_count, np.zeros(k, np.int64)])
            self.median = np.concatenate([self.median, np.full(k, np.nan)])
            self.streak = np.concatenate([self.streak, np.zeros(k, np.int64)])
            self.moving = np.concatenate([self.moving, np.zeros(k)])
            self.reported = np.concatenate([self.reported, np.full(k, -1, np.int64)])
        rows = np.fromiter((self._row[n] for n in names), np.int64, len(names))
        self._names_seen = (names, rows)
        return rows

    def early_median(self, rows: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Each layer's median of its first `history` scales, taken once they are all in (0 before;
        until then this step's scale joins them)."""
        pending = np.isnan(self.median[rows])
        full = pending & (self.early_count[rows] >= self.history)
        if full.any():
            self.median[rows[full]] = np.median(self.early[rows[full]], axis=1)
        joins = pending & ~full
        if joins.any():
            self.early[rows[joins], self.early_count[rows[joins]]] = scale[joins]
            self.early_count[rows[joins]] += 1
        return np.where(np.isnan(self.median[rows]), 0.0, self.median[rows])

    def state(self) -> dict[str, Any]:
        names = list(self._row)
        r = np.arange(len(names))
        return {
            "_early": {n: [float(v) for v in self.early[i, :self.early_count[i]]] for n, i in zip(names, r)
                       if np.isnan(self.median[i])},
            "_early_median": {n: float(self.median[i]) for n, i in zip(names, r) if not np.isnan(self.median[i])},
            "_streak": {n: int(self.streak[i]) for n, i in zip(names, r)},
            "_moving": {n: float(self.moving[i]) for n, i in zip(names, r) if self.moving[i] != 0},
            "_reported": {n: int(self.reported[i]) for n, i in zip(names, r) if self.reported[i] >= 0},
        }

    def load(self, state: Mapping[str, Any]) -> None:
        names = list(dict.fromkeys([*state.get("_early", {}), *state.get("_early_median", {}),
                                    *state.get("_streak", {}), *state.get("_moving", {}), *state.get("_reported", {})]))
        rows = self.rows(names)
        for name, i in zip(names, rows.tolist()):
            early = [float(v) for v in state.get("_early", {}).get(name, [])][:self.history]
            self.early[i, :len(early)] = early
            self.early_count[i] = len(early)
            if name in state.get("_early_median", {}):
                self.median[i] = float(state["_early_median"][name])
                self.early_count[i] = self.history
            self.streak[i] = int(state.get("_streak", {}).get(name, 0))
            self.moving[i] = float(state.get("_moving", {}).get(name, 0.0))
            self.reported[i] = int(state.get("_reported", {}).get(name, -1))
        self._names_seen = (None, np.zeros(0, np.int64))


def _describe(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
