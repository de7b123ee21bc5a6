"""Capture plans: which parameters each tensor kind measures, and the native tables that read them.

Built once from the model and the collections (again only when the model changes); each step
only looks up the tables for the collections due, so the per-step path does no per-tensor Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

from .config import Collection
from .meta import ParameterGroups, parameter_groups
from .tensor_table import TensorTable

Due = tuple[str, ...]  # names of the collections due this step


@dataclass(frozen=True)
class Selection:
    """The parameters chosen by one set of due collections, and the table that reads them."""

    index: np.ndarray  # parameter indices
    names: list[str]
    names_arrow: pa.Array
    table: TensorTable
    rows: np.ndarray  # 0 .. len(names) - 1, made once: the per-step path allocates nothing it can keep


@dataclass
class KindPlan:
    """The parameters one tensor kind can measure, and a cached selection per set of due collections."""

    collections: list[Collection]
    names: list[str]
    aliases: list[list[str]]
    params: list[torch.nn.Parameter]
    trainable_only: bool
    _cache: dict[Due, Selection] = field(default_factory=dict, repr=False)
    _due_at: tuple[str, int] = field(default=("", -1), repr=False)  # the (mode, step) _due_now is for
    _due_now: Due = field(default=(), repr=False)

    def due(self, mode: str, step: int) -> Due:
        if self._due_at != (mode, step):  # asked several times a step: worked out once
            self._due_now = tuple(c.name for c in self.collections if c.due(mode, step))
            self._due_at = (mode, step)
        return self._due_now

    def histogram(self, due: Due) -> bool:
        return any(c.histogram for c in self.collections if c.name in due)

    def selection(self, due: Due) -> Selection:
        cached = self._cache.get(due)
        if cached is None:
            chosen = [c for c in self.collections if c.name in due]
            index = [i for i, (aliases, p) in enumerate(zip(self.aliases, self.params))
                     if (p.requires_grad or not self.trainable_only)
                     and any(c.selects(n) for c in chosen for n in aliases)]
            names = [self.names[i] for i in index]
            cached = self._cache[due] = Selection(np.asarray(index, np.int64), names, pa.array(names, pa.string()),
                                                  TensorTable([self.params[i] for i in index]), np.arange(len(index)))
        return cached


@dataclass(frozen=True)
class PostStepLayout:
    """The post-step launch for one combination of due weight and update collections."""

    weights: Selection  # the due weights (may be empty)
    weight_part: np.ndarray  # parameter indices: the weight selection, then updated parameters outside it
    weight_table: TensorTable  # reads weight_part
    updates: Selection
    ratio_positions: np.ndarray  # per updated parameter: its position in weight_part


@dataclass
class CapturePlans:
    """The model's parameters and every kind's plan; rebuilt when the model changes."""

    groups: ParameterGroups
    names: list[str]
    params: list[torch.nn.Parameter]
    grad: KindPlan
    weight: KindPlan
    update: KindPlan
    module_ids: frozenset[int]
    all_cpu: bool
    _layouts: dict[tuple[Due, Due], PostStepLayout] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, model: torch.nn.Module, collections: tuple[Collection, ...]) -> CapturePlans:
        groups = parameter_groups(model)
        names = [name for name, _, _ in groups]
        params = [p for _, p, _ in groups]
        aliases = [all_names for _, _, all_names in groups]

        def plan(kind: str, trainable_only: bool) -> KindPlan:
            return KindPlan([c for c in collections if c.kind == kind], names, aliases, params, trainable_only)

        return cls(groups, names, params, plan("grad", True), plan("weight", False), plan("update", True),
                   frozenset(id(m) for m in model.modules()), all(p.device.type == "cpu" for p in params))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(p.shape) for name, p in zip(self.names, self.params)}

    def post_step_layout(self, weight_due: Due, update_due: Due) -> PostStepLayout:
        key = (weight_due, update_due)
        layout = self._layouts.get(key)
        if layout is None:
            weights = self.weight.selection(weight_due)
            updates = self.update.selection(update_due)
            position = {int(p): i for i, p in enumerate(weights.index)}
            extra = [int(p) for p in updates.index if int(p) not in position]
            for p in extra:
                position[p] = len(position)
            weight_part = np.concatenate([weights.index, np.asarray(extra, np.int64)]).astype(np.int64)
            layout = self._layouts[key] = PostStepLayout(
                weights=weights, weight_part=weight_part,
                weight_table=TensorTable([self.params[i] for i in weight_part]), updates=updates,
                ratio_positions=np.asarray([position[int(p)] for p in updates.index], np.int64))
        return layout
