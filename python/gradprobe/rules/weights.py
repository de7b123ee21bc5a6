"""Weight and update rules: update ratio, all-zero, unchanged, variance."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..records import StatsRecord
from .base import Finding, Rule, Severity, per_row
from .gradients import _describe

# What UnchangedTensor compares between two recorded steps.
_SIGNATURE = ("l2", "l1", "min", "max", "mean", "std")


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
    stats_kinds = frozenset({"weight"})
    num_steps: int = 3
    _rows: dict[str, int] = field(default_factory=dict, repr=False)  # name -> row of the arrays below
    _last: np.ndarray = field(default_factory=lambda: np.zeros((0, len(_SIGNATURE))), repr=False)
    _streak: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    _reported: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)  # -1: not reported
    _names_seen: tuple[Any, np.ndarray] = field(default=(None, np.zeros(0, np.int64)), repr=False, compare=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "weight":
            return []
        rows = per_row(record)
        at = self._rows_of(record.names)[rows]
        signature = np.stack([getattr(record.stats, f)[rows] for f in _SIGNATURE], axis=1)
        same = np.all(signature == self._last[at], axis=1)  # NaN never equals: a NaN weight is not "unchanged"
        self._streak[at] = np.where(same, self._streak[at] + 1, 0)
        self._reported[at[~same]] = -1
        self._last[at] = signature
        new = (self._streak[at] >= self.num_steps) & (self._reported[at] < 0)
        if not new.any():
            return []
        self._reported[at[new]] = record.step
        unchanged = [record.names[i] for i in rows[new]]
        return [self.finding(record.step, record.mode,
                             f"{_describe(unchanged)} unchanged for {self.num_steps} steps (at step {record.step}): "
                             f"not being trained. Next: compare model.parameters() with the optimizer's "
                             f"param_groups; check requires_grad and the learning rate", unchanged,
                             steps=self.num_steps, layers=len(unchanged))]

    def _rows_of(self, names: Sequence[str]) -> np.ndarray:
        seen, rows = self._names_seen
        if seen is names:
            return rows
        new = [n for n in dict.fromkeys(names) if n not in self._rows]
        if new:
            start = len(self._rows)
            self._rows.update((n, start + k) for k, n in enumerate(new))
            self._last = np.vstack([self._last, np.full((len(new), len(_SIGNATURE)), np.nan)])
            self._streak = np.concatenate([self._streak, np.zeros(len(new), np.int64)])
            self._reported = np.concatenate([self._reported, np.full(len(new), -1, np.int64)])
        rows = np.fromiter((self._rows[n] for n in names), np.int64, len(names))
        self._names_seen = (names, rows)
        return rows

    # The state keeps its earlier JSON form: name -> streak, -> last signature, -> step reported.
    def state_dict(self) -> dict[str, Any]:
        names = list(self._rows)
        return {"_streak": {n: int(self._streak[i]) for i, n in enumerate(names)},
                "_last": {n: [float(v) for v in self._last[i]] for i, n in enumerate(names)},
                "_reported": {n: int(self._reported[i]) for i, n in enumerate(names) if self._reported[i] >= 0}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = set(state) - {"_streak", "_last", "_reported"}
        if unknown:
            raise KeyError(f"{self.name}: unknown state key {sorted(unknown)[0]!r}")
        names = list(dict.fromkeys([*state.get("_streak", {}), *state.get("_last", {}), *state.get("_reported", {})]))
        self._rows, self._names_seen = {}, (None, np.zeros(0, np.int64))
        self._last, self._streak = np.zeros((0, len(_SIGNATURE))), np.zeros(0, np.int64)
        self._reported = np.zeros(0, np.int64)
        rows = self._rows_of(names)
        for name, i in zip(names, rows.tolist()):
            self._streak[i] = int(state.get("_streak", {}).get(name, 0))
            last = state.get("_last", {}).get(name)
            if last is not None:
                self._last[i] = [float(v) for v in last]
            self._reported[i] = int(state.get("_reported", {}).get(name, -1))


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
