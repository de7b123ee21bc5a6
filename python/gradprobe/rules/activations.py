"""Activation rules: dead units (ReLU family) and saturated activations (tanh, sigmoid)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..records import StatsRecord
from ..stats._layout import HIST_EXP_MIN
from .base import Finding, Rule, per_row
from .gradients import _describe

_RELU_LIKE = ("relu", "gelu", "silu", "elu", "mish")
_RELU_TYPES = {"ReLU", "ReLU6", "LeakyReLU", "GELU", "GELUActivation", "NewGELUActivation", "FastGELUActivation",
               "QuickGELUActivation", "SiLU", "ELU", "Mish"}


def module_kind(name: str, module_types: Mapping[str, str], keywords: tuple[str, ...], types: set[str]) -> bool:
    """Whether the module behind an activation label is of these types (by type when known, else by name)."""
    base = name.split(":")[0].split("#")[0]
    if module_types:
        return module_types.get(base) in types
    return any(k in base.rsplit(".", 1)[-1].lower() for k in keywords)


@dataclass
class DeadUnits(Rule):
    """ReLU-family activation outputs that are zero almost everywhere.

    A layer is reported when more than `threshold_layer` of its outputs are inactive, where
    inactive means exactly zero (ReLU) or with |x| below `inactive_below` (GELU/SiLU tails). The
    statistics are per tensor, so `threshold_layer` is the share of all outputs of the layer in
    the batch (a healthy ReLU layer sits near 50%); smdebug's per-unit threshold_inactivity is
    approximated by requiring the share to exceed threshold_layer + (1 - threshold_layer) *
    (1 - threshold_inactivity) (default: 99.5%).
    Why: dead units pass no gradient; the capacity they hold is lost for good.
    Typical causes: a large negative bias, a learning rate that pushed units negative, bad init.
    Try: LeakyReLU/GELU, smaller learning rate, re-initialise biases at 0.
    """

    code = "GP130"
    threshold_inactivity: float = 0.01
    threshold_layer: float = 0.5
    inactive_below: float = 2.0 ** -20
    module_types: Mapping[str, str] = field(default_factory=dict)  # name -> class name; the engine fills it
    _reported: dict[str, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "activation":
            return []
        limit = self.threshold_layer + (1 - self.threshold_layer) * (1 - self.threshold_inactivity)
        dead = []
        edge_bin = int(np.floor(np.log2(self.inactive_below))) - HIST_EXP_MIN + 1
        for i in per_row(record):
            name = record.names[i]
            if name.endswith(":input") or not module_kind(name, self.module_types, _RELU_LIKE, _RELU_TYPES):
                continue
            inactive = record.stats.zeros[i]
            if record.stats.hist is not None:
                inactive += record.stats.hist[i, :max(edge_bin, 0)].sum()
            share = inactive / record.stats.numel[i]
            if share > limit and name not in self._reported:
                self._reported[name] = record.step
                dead.append((name, share))
        if not dead:
            return []
        names = [n for n, _ in dead]
        return [self.finding(record.step, record.mode,
                             f"{_describe(names)}: {100 * max(s for _, s in dead):.1f}% of outputs inactive "
                             f"at step {record.step} (dead units pass no gradient). Next: lower the learning "
                             f"rate, reset large negative biases, or use "
                             "LeakyReLU/GELU", names, inactive_share=max(s for _, s in dead))]


@dataclass
class SaturatedActivation(Rule):
    """tanh / sigmoid (the module classes in `types`) whose inputs are saturated: more than
    `threshold_layer` of the pre-activations have |x| >= `saturation` (the derivative there is
    below ~1e-3). Softmax is not in the default `types`: its inputs are shift-invariant and
    attention masks add large negatives on purpose, so |x| >= 4 says nothing about it.

    Why: saturated units pass almost no gradient; training of the layers below stalls.
    Typical causes: large initial weights, missing normalisation, a too large learning rate,
    softmax temperature / attention logits that grow.
    Try: normalisation (LayerNorm), smaller initialisation, lower learning rate.
    """

    code = "GP131"
    threshold_layer: float = 0.5
    saturation: float = 4.0  # tanh'(4) ~ 1.3e-3; sigmoid'(8) ~ 3e-4: use 8 for sigmoid-only nets
    types: tuple[str, ...] = ("Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid", "LogSigmoid")  # module class names
    module_types: Mapping[str, str] = field(default_factory=dict)  # name -> class name; the engine fills it
    _reported: dict[str, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind != "activation" or record.stats.hist is None:
            return []
        first_bin = int(np.floor(np.log2(self.saturation))) - HIST_EXP_MIN + 1  # |x| >= saturation
        saturated = []
        for i in per_row(record):
            name = record.names[i]
            if not name.endswith(":input") or not module_kind(name, self.module_types,
                                                               tuple(t.lower() for t in self.types), set(self.types)):
                continue
            share = record.stats.hist[i, first_bin:].sum() / record.stats.numel[i]
            if share > self.threshold_layer and name not in self._reported:
                self._reported[name] = record.step
                saturated.append((name.rsplit(":", 1)[0], share))
        if not saturated:
            return []
        names = [n for n, _ in saturated]
        return [self.finding(record.step, record.mode,
                             f"{_describe(names)} saturated at step {record.step}: "
                             f"{100 * max(s for _, s in saturated):.0f}% of inputs have |x| >= {self.saturation:g}, "
                             f"where the derivative is ~0. Next: smaller initialisation, normalisation before "
                             f"the activation, or a lower learning "
                             "rate", names, saturated_share=max(s for _, s in saturated))]
