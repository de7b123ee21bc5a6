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
    (its inputs, the outputs of the modules before it, were finite); for gradients, the first
    tensor in backward order (the last in model order) with a NaN or Inf. Reported on the step
    where it happens, once per kind until the values are finite again.
    Why: one NaN spreads to every weight within a step or two; the run is lost from then on.
    Typical causes: a learning rate too large, log/sqrt/division of zero, fp16 overflow, a bad
    input batch, an exploding loss.
    Try: lower the learning rate, clip gradients, add epsilons, check the inputs of the origin.
    """

    code = "GP100"
    default_severity = Severity.CRITICAL
    _active: dict[str, int] = field(default_factory=dict, repr=False)

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        rows = per_row(record)
        bad = rows[(record.stats.nans[rows] + record.stats.infs[rows]) > 0]
        key = record.kind
        if not len(bad):
            self._active.pop(key, None)
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

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        found = []
        for name, value in record.values.items():
            if name.startswith("loss") and not math.isfinite(value):
                key = f"scalar:{name}"
                if key not in self._active:
                    self._active[key] = record.step
                    found.append(self.finding(record.step, record.mode, f"{name} is {value} at step {record.step}. "
                                                                       "Next: find the first non-finite tensor "
                                                                       "(config='full'); lower the learning rate",
                                              [name], value=float(np.nan_to_num(value))))
            elif name.startswith("loss"):
                self._active.pop(f"scalar:{name}", None)
        return found
