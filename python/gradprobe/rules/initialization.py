"""Poor weight initialisation, judged in the first steps."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..records import StatsRecord
from ..stats._layout import hist_edges
from .base import Finding, Rule, Severity, per_row
from .gradients import _describe


def common_scales(shape: tuple[int, ...]) -> dict[str, float]:
    """The weight std of the initialisations real models use, for a weight of this shape."""
    fan_in = math.prod(shape[1:])
    fan_out = shape[0] * math.prod(shape[2:])
    return {"1/sqrt(fan_in) (PyTorch default, LeCun)": 1 / math.sqrt(fan_in),
            "sqrt(2/fan_in) (He)": math.sqrt(2 / fan_in),
            "sqrt(2/(fan_in+fan_out)) (Xavier)": math.sqrt(2 / (fan_in + fan_out)),
            "1/sqrt(fan_out)": 1 / math.sqrt(fan_out),
            # BERT/GPT-2: N(0, 0.02); GPT-2's residual projections 0.02/sqrt(2 n_layer) are within the factor.
            "0.02 (BERT, GPT-2)": 0.02,
            "1 (nn.Embedding default)": 1.0}


@dataclass
class PoorWeightInitialization(Rule):
    """At the first recorded weights (within the first `steps` steps): weight matrices whose values
    are all identical but not zero (error: units cannot differentiate); weight matrices whose std is
    more than `std_factor` times away from every common initialisation scheme for their shape
    (warning: fan-in, fan-out, He, Xavier, N(0, 0.02) of BERT/GPT-2 with GPT-2's residual scaling,
    N(0, 1) of nn.Embedding); and, when `distribution_range` > 0, a gradient spread (p95 - p5 of
    |g|, from the histogram) below it. Vectors (biases, norm weights, often zero- or one-initialised
    on purpose) are not judged; all-zero matrices are AllZero's.

    Why: a bad start can doom a run that would otherwise train: symmetric units never
    differentiate, badly scaled layers vanish or explode.
    Typical causes: constant initialisation, a custom init with the wrong scale, pre-trained
    weights not loaded (a "newly initialized" warning).
    Try: PyTorch's default or Xavier/He initialisation; check that the checkpoint loaded.
    Needs parameter shapes (passed by the engine from meta.json) for the scale check.
    """

    code = "GP140"
    default_severity = Severity.ERROR
    steps: int = 10
    distribution_range: float = 0.001
    std_factor: float = 10.0
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    _checked_weights: bool = False
    _grad_spread_reported: bool = False

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.step >= self.steps or record.mode != "train":
            return []
        if record.kind == "weight" and not self._checked_weights:
            self._checked_weights = True  # the first weight record: the weights the first step started from
            return self._check_weights(record)
        if (record.kind == "grad" and record.stats.hist is not None and self.distribution_range > 0
                and not self._grad_spread_reported):
            return self._check_gradient_spread(record)
        return []

    def _check_weights(self, record: StatsRecord) -> list[Finding]:
        found = []
        matrices = [i for i in per_row(record) if len(self.shapes.get(record.names[i], (0,))) >= 2
                    or (not self.shapes and record.names[i].endswith("weight") and record.stats.numel[i] > 1
                        and "norm" not in record.names[i].lower())]
        constant = [record.names[i] for i in matrices
                    if record.stats.std[i] == 0 and record.stats.numel[i] > 1 and record.stats.l1[i] > 0]
        if constant:
            found.append(self.finding(record.step, record.mode,
                                      f"{_describe(constant)}: every value is identical at initialisation (step "
                                      f"{record.step}): the units compute the same function and cannot differentiate. "
                                      f"Next: initialise randomly (PyTorch's default, Xavier or He)",
                                      constant, layers=len(constant)))
        off = []
        for i in matrices:
            shape = self.shapes.get(record.names[i])
            std = float(record.stats.std[i])
            if not shape or len(shape) < 2 or std <= 0:
                continue
            scheme, expected = min(common_scales(tuple(shape)).items(), key=lambda kv: abs(math.log(std / kv[1])))
            if abs(math.log(std / expected)) > math.log(self.std_factor):
                off.append((record.names[i], std, scheme, expected))
        if off:
            names = [n for n, *_ in off]
            name, std, scheme, expected = off[0]
            finding = self.finding(record.step, record.mode,
                                   f"{_describe(names)}: weight std at initialisation (step {record.step}) is far from "
                                   f"every common scheme; {name}: {std:.3g}, {std / expected:.3g}x the nearest, "
                                   f"{scheme} = {expected:.3g}. Next: if not intended, use PyTorch's default, Xavier "
                                   f"or He initialisation, or check that the checkpoint loaded",
                                   names, scale=std / expected)
            found.append(finding if self.severity is not None else dataclasses.replace(finding,
                                                                                       severity=Severity.WARNING))
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
                                 f"gradient magnitudes span only {p95 - p5:.3g} (p5 {p5:.3g}, p95 {p95:.3g}) at step "
                                 f"{record.step}: every layer gets nearly the same signal. Next: check the "
                                 f"initialisation scale of each layer", (), spread=float(p95 - p5))]
        return []
