"""Poor weight initialisation, judged in the first steps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..records import ScalarRecord, StatsRecord
from ..stats._layout import hist_edges
from .base import Finding, Rule, Severity, per_row
from .gradients import _describe


@dataclass
class PoorWeightInitialization(Rule):
    """In the first `steps` steps: identical values across a weight matrix; weight std far from
    the fan-in-scaled expectation (outside [1/std_factor, std_factor] x 1/sqrt(fan_in));
    variance ratio across layers above `threshold`; gradient spread (p95 - p5 of |g|, from the
    histogram) below `distribution_range`; and a loss that does not fall within `patience` steps.

    Why: a bad start can doom a run that would otherwise train: symmetric units never
    differentiate, badly scaled layers vanish or explode.
    Typical causes: constant or zero initialisation, a custom init with the wrong scale,
    pre-trained weights not loaded (a "newly initialized" warning).
    Try: PyTorch's default or Xavier/He initialisation; check that the checkpoint loaded.
    Needs parameter shapes (passed by the engine from meta.json) for the fan-in check.
    """

    code = "GP140"
    default_severity = Severity.ERROR
    steps: int = 10
    threshold: float = 10.0
    distribution_range: float = 0.001
    patience: int = 5
    std_factor: float = 10.0
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    _checked_weights: bool = False
    _losses: list[float] = field(default_factory=list, repr=False)
    _grad_spread_reported: bool = False
    _loss_reported: bool = False

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.step >= self.steps or record.mode != "train":
            return []
        if record.kind == "weight" and not self._checked_weights:
            self._checked_weights = True  # the first weight record: the weights the first step started from
            return self._check_weights(record)
        if record.kind == "grad" and record.stats.hist is not None and not self._grad_spread_reported:
            return self._check_gradient_spread(record)
        return []

    def _check_weights(self, record: StatsRecord) -> list[Finding]:
        found = []
        matrices = [i for i in per_row(record) if len(self.shapes.get(record.names[i], (0,))) >= 2
                    or (not self.shapes and record.names[i].endswith("weight") and record.stats.numel[i] > 1
                        and "norm" not in record.names[i].lower())]
        constant = [record.names[i] for i in matrices if record.stats.std[i] == 0 and record.stats.numel[i] > 1]
        if constant:
            found.append(self.finding(record.step, record.mode,
                                      f"{_describe(constant)}: every value identical at initialisation "
                                      f"(units cannot differentiate)", constant, layers=len(constant)))
        off = []
        for i in matrices:
            shape = self.shapes.get(record.names[i])
            if not shape or len(shape) < 2:
                continue
            fan_in = math.prod(shape[1:])
            expected = 1 / math.sqrt(fan_in)
            std = float(record.stats.std[i])
            if std > 0 and not (expected / self.std_factor <= std <= expected * self.std_factor):
                off.append((record.names[i], std / expected))
        if off:
            names = [n for n, _ in off]
            found.append(self.finding(record.step, record.mode,
                                      f"{_describe(names)}: weight std {off[0][1]:.3g}x the 1/sqrt(fan_in) scale",
                                      names, scale=off[0][1]))
        stds = np.array([record.stats.std[i] for i in matrices if record.stats.std[i] > 0])
        if len(stds) >= 2 and (stds.max() ** 2) / (stds.min() ** 2) > self.threshold ** 2 * 100:
            found.append(self.finding(record.step, record.mode,
                                      f"weight variance differs {float((stds.max() / stds.min()) ** 2):.3g}x across "
                                      f"layers", (), variance_ratio=float((stds.max() / stds.min()) ** 2)))
        return found

    def _check_gradient_spread(self, record: StatsRecord) -> list[Finding]:
        assert record.stats.hist is not None
        counts = record.stats.hist[per_row(record)].sum(axis=0)
        total = counts.sum()
        if total == 0:
            return []
        edges = hist_edges()
        cumulative = np.cumsum(counts) / total
        p5 = edges[int(np.searchsorted(cumulative, 0.05))]
        p95 = edges[min(int(np.searchsorted(cumulative, 0.95)) + 1, len(edges) - 2)]
        if p95 - p5 < self.distribution_range:
            self._grad_spread_reported = True
            return [self.finding(record.step, record.mode,
                                 f"gradient magnitudes span only {p95 - p5:.3g} (p5 {p5:.3g}, p95 {p95:.3g}) in the "
                                 f"first steps", (), spread=float(p95 - p5))]
        return []

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        value = record.values.get("loss")
        if record.mode != "train" or value is None or not math.isfinite(value) or self._loss_reported:
            return []
        if record.step < self.steps:
            self._losses.append(value)
        if len(self._losses) > self.patience and min(self._losses[1:]) >= self._losses[0]:
            self._loss_reported = True
            return [self.finding(record.step, record.mode,
                                 f"loss did not fall below its first value ({self._losses[0]:.4g}) within "
                                 f"{len(self._losses) - 1} steps of the start", ("loss",), first=self._losses[0])]
        return []
