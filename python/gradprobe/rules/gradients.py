"""Gradient magnitude rules: vanishing, exploding, and low-precision range."""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..records import ScalarRecord, StatsRecord
from ..stats._layout import HIST_EXP_MIN
from .base import Finding, Rule, Severity, per_row


@dataclass
class VanishingGradient(Rule):
    """Layers whose mean |gradient| fell below `threshold`.

    Why: such layers stop learning; in deep stacks the early layers go first.
    Typical causes: saturating activations (sigmoid, tanh) in deep nets, tiny initialisation,
    missing residual connections or normalisation, a learning-rate schedule that decayed to zero.
    Try: ReLU/GELU, He/Xavier initialisation, normalisation layers, residual connections.
    Reports the layers and the first step they vanished (each layer once). Biases are left out by
    default (`exclude`): some are structurally ~0, e.g. attention key biases, whose gradient is
    zero because softmax ignores a constant added to every key.
    """

    code = "GP101"
    default_severity = Severity.ERROR
    threshold: float = 1e-7
    exclude: tuple[str, ...] = (r"bias$",)  # regexes over tensor names
    _reported: dict[str, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "grad":
            return []
        rows = np.asarray([i for i in per_row(record)
                           if not any(re.search(p, record.names[i]) for p in self.exclude)], dtype=np.int64)
        mean_abs = record.stats.l1[rows] / record.stats.numel[rows]
        low = rows[mean_abs < self.threshold]
        new = [int(i) for i in low if record.names[i] not in self._reported]
        if not new:
            return []
        for i in new:
            self._reported[record.names[i]] = record.step
        names = [record.names[i] for i in new]
        worst = float(np.min(record.stats.l1[new] / record.stats.numel[new]))
        return [self.finding(record.step, record.mode,
                             f"gradients of {_describe(names)} vanished at step {record.step} "
                             f"(mean |g| < {self.threshold:g}; smallest {worst:.3g})", names,
                             smallest_mean_abs=worst, layers=len(names))]


@dataclass
class ExplodingGradient(Rule):
    """A layer's gradient norm above `max_norm`, or above `growth` times its median over the last
    `window` steps.

    Why: exploding gradients make updates overshoot; they usually end in NaN.
    Typical causes: a learning rate too large, no gradient clipping, bad initialisation,
    a loss scale that is too large under fp16, an unstable architecture (deep RNNs).
    Try: lower the learning rate, clip gradients (clip_grad_norm_), warm up the learning rate.
    """

    code = "GP102"
    default_severity = Severity.ERROR
    max_norm: float = 1e3
    growth: float = 100.0
    window: int = 10
    _history: dict[str, deque[float]] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "grad":
            return []
        found = []
        rows = per_row(record)
        too_large = [int(i) for i in rows if np.isfinite(record.stats.l2[i]) and record.stats.l2[i] > self.max_norm]
        if too_large:
            names = [record.names[i] for i in too_large]
            found.append(self.finding(record.step, record.mode,
                                      f"gradient norm of {_describe(names)} is above {self.max_norm:g} "
                                      f"(largest {float(np.max(record.stats.l2[too_large])):.3g})", names,
                                      largest_norm=float(np.max(record.stats.l2[too_large]))))
        grown = []
        for i in rows:
            name, norm = record.names[i], float(record.stats.l2[i])
            history = self._history.setdefault(name, deque(maxlen=self.window))
            if not isinstance(history, deque):
                history = self._history[name] = deque(history, maxlen=self.window)
            # Against the window's median, not its minimum: a norm that passes near zero (a bias
            # settling) is no baseline for growth.
            finite = [h for h in history if math.isfinite(h)]
            if len(finite) >= max(2, self.window // 2) and math.isfinite(norm):
                baseline = float(np.median(finite))
                if baseline > 0 and norm > self.growth * baseline:
                    grown.append((name, norm / baseline))
            history.append(norm)
        if grown:
            names = [n for n, _ in grown]
            found.append(self.finding(record.step, record.mode,
                                      f"gradient norm of {_describe(names)} grew {max(f for _, f in grown):.0f}x "
                                      f"within {self.window} steps", names, growth=max(f for _, f in grown)))
        return found


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
                                      f"{self.dtype} at loss scale {self._scale:g}", (), underflow_share=under_share))
        if over_share > self.max_overflow:
            found.append(self.finding(record.step, record.mode,
                                      f"{100 * over_share:.2g}% of gradient values would overflow in {self.dtype} "
                                      f"at loss scale {self._scale:g}", (), overflow_share=over_share))
        return found


def _describe(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
