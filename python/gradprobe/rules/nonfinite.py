"""NaN and Inf: where they first appear."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..records import ScalarRecord, StatsRecord
from .base import Finding, Rule, Severity, per_row


@dataclass
class NonFinite(Rule):
    """NaN or Inf in losses, gradients, weights, updates or activations, located at its origin.

    Origin: for activations, the first module in execution order whose output is non-finite
    (its inputs, the outputs of the modules before it, were finite); in the backward, a module
    without parameters whose output gradient was finite and whose input gradient was not (kind
    "activation_grad", recorded by the probe when a step's gradients hold NaN/Inf), else the first
    parameter gradient in backward order (the last in model order) with a NaN or Inf. Reported on
    the step where it happens, once per kind until the values are finite again.
    Why: one NaN spreads to every weight within a step or two; the run is lost from then on.
    Typical causes: a learning rate too large, log/sqrt/division of zero, fp16 overflow, a bad
    input batch, an exploding loss.
    Try: lower the learning rate, clip gradients, add epsilons, check the inputs of the origin.
    """

    code = "GP100"
    default_severity = Severity.CRITICAL
    _active: dict[str, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        if record.kind == "activation_grad":
            return self._backward_origin(record)
        rows = per_row(record)
        bad = rows[(record.stats.nans[rows] + record.stats.infs[rows]) > 0]
        key = record.kind
        if not len(bad):
            self._active.pop(key, None)
            if key == "grad" and self._active.get("activation", record.step) < record.step:
                # Finite gradients after a non-finite forward: the forward was finite again (the origin
                # records only the steps where it was not).
                self._active.pop("activation")
            return []
        if key in self._active:
            return []
        self._active[key] = record.step
        if record.kind == "activation":
            origin = int(bad[0])  # rows are in execution order
            where = f"the output of {record.names[origin]}"
            detail = "inputs were finite" if origin == int(rows[0]) or not len(bad[bad < origin]) else ""
        elif record.kind == "grad":
            origin = int(bad[-1])  # backward runs in reverse model order
            where = f"the gradient of {record.names[origin]}"
            detail = "first in backward order"
            if self._active.get("activation") != record.step:
                detail += "; the forward was finite, so the backward produced it"
        else:
            origin = int(bad[0])
            where = f"the {record.kind} of {record.names[origin]}"
            detail = ""
        nans, infs = int(record.stats.nans[origin]), int(record.stats.infs[origin])
        message = (f"NaN/Inf first appeared in {where} at step {record.step} ({nans} NaN, {infs} Inf"
                   f"{'; ' + detail if detail else ''}); {len(bad)} {record.kind} tensors affected. Next: inspect the "
                   f"inputs of that module at that step; lower the learning rate or add an epsilon to "
                   "log/sqrt/division")
        return [self.finding(record.step, record.mode, message, [record.names[origin]], nans=nans, infs=infs,
                             affected=len(bad))]

    def _backward_origin(self, record: StatsRecord) -> list[Finding]:
        """Rows are gradients of parameterless modules' outputs (`m`) and inputs (`m:input`) in the
        order the backward produced them; it comes just before the step's parameter gradients."""
        rows = per_row(record)
        nonfinite = (record.stats.nans + record.stats.infs) > 0
        if "grad" in self._active or not nonfinite[rows].any():
            return []
        output_row = {record.names[i]: i for i in rows if not record.names[i].endswith(":input")}
        # A module whose output gradient is finite and whose input gradient is not; the first such
        # in backward order (a module's output is often the next one's input: rows repeat tensors).
        first = next((int(i) for i in rows if record.names[i].endswith(":input") and nonfinite[i]
                      and not nonfinite[output_row.get(record.names[i].removesuffix(":input"), i)]), None)
        if first is None:
            return []  # broken downstream of every watched module: the parameter gradients tell
        module = record.names[first].removesuffix(":input")
        self._active["grad"] = record.step  # the parameter gradients that follow are its consequence
        nans, infs = int(record.stats.nans[first]), int(record.stats.infs[first])
        forward = "" if self._active.get("activation") == record.step else "; the forward was finite"
        message = (f"NaN/Inf first appeared in the backward of {module} at step {record.step}: the gradient of its "
                   f"output was finite, the gradient of its input was not ({nans} NaN, {infs} Inf{forward}). Next: "
                   "look for a derivative that is infinite at the values it saw (sqrt or pow at 0, log near 0, "
                   "division by a tiny value) and add an epsilon")
        return [self.finding(record.step, record.mode, message, [module], nans=nans, infs=infs)]

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        found = []
        for name, value in record.values.items():
            if name.startswith("loss") and not math.isfinite(value):
                key = f"scalar:{name}"
                if key not in self._active:
                    self._active[key] = record.step
                    found.append(self.finding(record.step, record.mode, f"{name} is {value} at step {record.step}. "
                                                                       "Next: a NonFinite finding on tensors names "
                                                                       "the module where it began (forward or "
                                                                       "backward); lower the learning rate",
                                              [name], value=float(np.nan_to_num(value))))
            elif name.startswith("loss"):
                self._active.pop(f"scalar:{name}", None)
        return found
