"""Weight and update rules: update ratio, all-zero, unchanged, variance."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..records import StatsRecord
from .base import Finding, Rule, Severity, per_row
from .gradients import _describe


@dataclass
class WeightUpdateRatio(Rule):
    """|w_after - w_before| / |w_after| above `large` or below `small` for a layer.

    Why: healthy training moves weights by roughly 1e-4..1e-2 of their norm per step; far larger
    means the step size is out of control, far smaller means the layer is not learning.
    Typical causes: learning rate too high or too low for that layer, frozen-by-accident
    parameters, weight decay dominating, Adam epsilon too large.
    Try: tune the learning rate (per layer group), check which parameters the optimizer holds.
    """

    code = "GP110"
    large: float = 10.0
    small: float = 1e-8
    start_step: int = 1  # the first step of a run often moves weights unusually
    _reported: dict[Any, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "update" or record.ratio is None or record.step < self.start_step:
            return []
        found = []
        rows = per_row(record)
        ratio = record.ratio[rows]
        bounds = (("large", ratio > self.large, self.large), ("small", ratio < self.small, self.small))
        for label, mask, bound in bounds:
            names = [record.names[i] for i in rows[mask & np.isfinite(ratio)]
                     if (label, record.names[i]) not in self._reported]
            for name in names:
                self._reported[(label, name)] = record.step
            if names:
                values = ratio[mask & np.isfinite(ratio)]
                advice = ("lower the learning rate (or that layer group's)" if label == "large" else
                          "check that the optimizer holds this parameter and its learning rate is not ~0")
                found.append(self.finding(record.step, record.mode,
                                          f"update/weight ratio too {label} for {_describe(names)} at step "
                                          f"{record.step} ({'>' if label == 'large' else '<'} {bound:g}; e.g. "
                                          f"{float(values[0]):.3g}). Next: {advice}", names, ratio=float(values[0])))
        return found

    def state_dict(self) -> dict[str, Any]:
        return {"_reported": [[k[0], k[1], v] for k, v in self._reported.items()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._reported = {(a, b): v for a, b, v in state["_reported"]}


@dataclass
class AllZero(Rule):
    """Tensors whose values are all exactly zero (gradients or weights; `kinds`). All-zero
    gradients are errors; all-zero weight matrices are warnings, since zero-initialising a last
    layer, a LoRA B matrix or a residual branch's output projection is done on purpose.

    Why: an all-zero weight matrix (bad initialisation) gives identical units that never
    differentiate; all-zero gradients mean the layer receives no learning signal.
    Typical causes: zero initialisation, a detached graph, a dead ReLU layer upstream, a frozen
    branch, a masked loss.
    Try: initialise weights randomly, check requires_grad and that the loss depends on the layer.
    """

    code = "GP111"
    default_severity = Severity.ERROR
    kinds: tuple[str, ...] = ("grad", "weight")
    min_numel: int = 2  # scalars (e.g. a zero bias of one unit) are not reported
    _reported: dict[Any, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind not in self.kinds:
            return []
        rows = per_row(record)
        stats = record.stats
        zero = rows[(stats.zeros[rows] == stats.numel[rows]) & (stats.numel[rows] >= self.min_numel)]
        names = [record.names[i] for i in zero if f"{record.kind}:{record.names[i]}" not in self._reported
                 and not (record.kind == "weight" and record.names[i].endswith("bias"))]
        if not names:
            return []
        for name in names:
            self._reported[f"{record.kind}:{name}"] = record.step
        if record.kind == "grad":
            return [self.finding(record.step, record.mode,
                                 f"gradient of {_describe(names)} is all zeros at step {record.step}: the layer "
                                 "gets no "
                                 f"learning signal. Next: check requires_grad, detach() calls and that the loss "
                                 f"depends on it", names)]
        finding = self.finding(record.step, record.mode,
                               f"{record.kind} of {_describe(names)} is all zeros at step {record.step}. Fine for a "
                               f"last layer, a LoRA B matrix or a residual output projection; elsewhere the units "
                               f"cannot differentiate. Next: initialise it randomly unless zero is intended", names)
        return [finding if self.severity is not None else dataclasses.replace(finding, severity=Severity.WARNING)]


@dataclass
class UnchangedTensor(Rule):
    """Weights that did not change over `num_steps` consecutive recorded steps.

    Why: a parameter the optimizer does not move is not being trained.
    Typical causes: the parameter is missing from the optimizer, requires_grad=False by accident,
    a zero learning rate, gradients that never reach it.
    Try: compare model.parameters() with optimizer.param_groups; check the learning rate.
    """

    code = "GP112"
    num_steps: int = 3
    _streak: dict[str, int] = field(default_factory=dict, repr=False)
    _last: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _reported: dict[Any, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "weight":
            return []
        unchanged = []
        for i in per_row(record):
            name = record.names[i]
            signature = [float(getattr(record.stats, f)[i]) for f in ("l2", "l1", "min", "max", "mean", "std")]
            if self._last.get(name) == signature:
                self._streak[name] = self._streak.get(name, 0) + 1
            else:
                self._streak[name] = 0
                self._reported.pop(name, None)
            self._last[name] = signature
            if self._streak[name] >= self.num_steps and name not in self._reported:
                self._reported[name] = record.step
                unchanged.append(name)
        if not unchanged:
            return []
        return [self.finding(record.step, record.mode,
                             f"{_describe(unchanged)} unchanged for {self.num_steps} steps (at step {record.step}): "
                             f"not being trained. Next: compare model.parameters() with the optimizer's "
                             f"param_groups; check requires_grad and the learning rate", unchanged,
                             steps=self.num_steps, layers=len(unchanged))]


@dataclass
class TensorVariance(Rule):
    """Variance of a tensor outside [min_threshold, max_threshold] (`kinds`, default weights).

    Why: a collapsing variance means units become identical; an exploding one precedes overflow.
    Typical causes: weight decay far too strong, a diverging optimizer, bad initialisation.
    Try: check the learning rate and weight decay; look at when the variance started to move.
    """

    code = "GP113"
    kinds: tuple[str, ...] = ("weight",)
    min_threshold: float = 1e-14
    max_threshold: float = 1e4
    _reported: dict[Any, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind not in self.kinds:
            return []
        rows = per_row(record)
        rows = rows[record.stats.numel[rows] > 1]
        variance = record.stats.std[rows] ** 2
        found = []
        for label, mask in (("below", variance < self.min_threshold), ("above", variance > self.max_threshold)):
            names = [record.names[i] for i in rows[mask]
                     if (label, record.names[i]) not in self._reported
                     and not record.names[i].endswith(("bias", "LayerNorm.weight", "norm.weight"))]
            for name in names:
                self._reported[(label, name)] = record.step
            if names:
                found.append(self.finding(record.step, record.mode,
                                          f"variance of {record.kind} {_describe(names)} is {label} "
                                          f"{self.min_threshold if label == 'below' else self.max_threshold:g} at step "
                                          f"{record.step}. Next: check the learning rate and weight decay, and "
                                          f"when the variance started to move", names))
        return found

    def state_dict(self) -> dict[str, Any]:
        return {"_reported": [[k[0], k[1], v] for k, v in self._reported.items()]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._reported = {(a, b): v for a, b, v in state["_reported"]}
