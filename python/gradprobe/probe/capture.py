"""Tensor capture on the training thread: gathers pointers, launches the fused pass, enqueues.

Where each kind is taken:
- gradients: in the first optimizer step-pre hook of an iteration (after accumulation and after a
  GradScaler unscaled them), or earlier when clip_grad_norm_ runs, so they are seen before
  clipping; with no optimizer step, at probe.step() if they still exist;
- weights and updates: at probe.step(), after every optimizer has stepped (post_step.py);
- activations: forward hooks armed only for due steps, one fused launch per forward.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..stats import PendingStats, StatsComputer
from ..stats.backends import ResultsRingFull
from ..stats.inputs import Table
from .config import ProbeConfig
from .consumer import Consumer, InputItem, StatsItem
from .distributed import Distribution, Exchanged
from .meta import ParameterGroups
from .plans import CapturePlans, Due, KindPlan
from .post_step import PostStepPass


@dataclass
class StepState:
    """What the current step has done so far; each step starts from a fresh one."""

    grads_taken: bool = False
    optimizer_stepped: bool = False
    weights_taken: bool = False
    overhead: float = 0.0  # seconds the training thread spent in gradprobe during this step


@dataclass(frozen=True)
class Launched:
    """One kind's launch: per name its row in the pending result (-1: absent, or another rank's)."""

    names: list[str]
    names_arrow: pa.Array
    result_rows: np.ndarray
    pending: PendingStats | None  # None: nothing to reduce here, or the launch was dropped
    any_present: bool  # whether any tensor of the selection exists this step (on any rank alike)
    exchange: Exchanged | None  # how the ranks' rows are combined (None: one process, or "off")

    @property
    def dropped(self) -> bool:
        """Dropped launches are not enqueued, except exchanged ones: every rank must take part."""
        return self.pending is None and self.result_rows.max(initial=-1) >= 0 and self.exchange is None


def warn_event(record: Mapping[str, Any]) -> None:
    warnings.warn(f"gradprobe: {record}", RuntimeWarning, stacklevel=2)


class TensorCapture:
    def __init__(self, model: torch.nn.Module, config: ProbeConfig, consumer: Consumer,
                 event: Callable[[Mapping[str, Any]], None] = warn_event) -> None:
        self.model = model
        self._event = event
        self.config = config
        self._consumer = consumer
        self._computer = StatsComputer(config.cpu_threads)
        self.plans = CapturePlans.build(model, config.collections)
        self.post_step = PostStepPass(self._computer, config.backend, consumer.put, self.launch, self.report_skipped)
        self.distribution: Distribution | None = None  # set by the probe under torch.distributed
        self.stale = False  # a parameter or module was added, or a layout moved: rebuild before the next capture
        self._activation_histogram = any(c.histogram for c in config.collections if c.kind == "activation")
        # The gradients kept for the backward NaN/Inf origin, and how to forget them (set by the probe's hooks).
        self.backward_origin: Callable[[], tuple[list[str], list[torch.Tensor]]] = lambda: ([], [])
        self.release_backward: Callable[[], None] = lambda: None

    def refresh_if_stale(self) -> ParameterGroups | None:
        """Rebuilds the plans after the model changed; returns the new parameter groups, if it did."""
        if not self.stale:
            return None
        self.plans = CapturePlans.build(self.model, self.config.collections)
        self.post_step.reset()
        if self.distribution is not None:
            self.distribution.reset()
        self.stale = False
        return self.plans.groups

    def on_registration(self, module: torch.nn.Module) -> None:
        if id(module) in self.plans.module_ids:
            self.stale = True

    def grads(self, state: StepState, mode: str, step: int, require_present: bool = False) -> None:
        kept_labels, kept_grads = self.backward_origin()
        if kept_grads and kept_grads[0].is_cuda:
            self.release_backward()  # the launch below is stream-ordered: the caching allocator may reuse them
        due = self.plans.grad.due(mode, step)
        if not due:
            return
        launched = self._launch(self.plans.grad, due, "grad")
        if (require_present and not launched.any_present) or launched.dropped:
            return  # no gradients at probe.step() (nothing happened this step), or the launch was dropped
        state.grads_taken = True
        if kept_grads:
            self._backward_origin(kept_labels, kept_grads, launched.pending, mode, step)
        self._consumer.put(StatsItem(step, mode, "grad", launched.names, launched.names_arrow, launched.result_rows,
                                     launched.pending, histogram=self.plans.grad.histogram(due),
                                     exchange=launched.exchange))

    def _backward_origin(self, labels: list[str], grads: list[torch.Tensor], pending: PendingStats | None,
                         mode: str, step: int) -> None:
        """The kept gradients of parameterless modules' outputs and inputs (nonfinite_origin.py),
        enqueued before the parameter gradients so that the rules see where the backward broke
        first. On the CPU the parameter gradients are already measured: the kept ones are measured
        only when those hold NaN/Inf. On a GPU they are always launched and kept only if non-finite."""
        if pending is None:
            return
        if not grads[0].is_cuda and not pending.any_nonfinite():
            return  # finite parameter gradients (or not known yet): nothing broke in this backward
        self.activations(labels, grads, mode, step, kind="activation_grad", origin_only=grads[0].is_cuda)

    def before_optimizer_step(self, state: StepState, mode: str, step: int) -> None:
        """Gradients (unless clipping took them), the snapshot for updates, the weights as used."""
        if not state.grads_taken:
            self.grads(state, mode, step)
        if self.distribution is not None and self.distribution.sharded:
            self.weights_now(state, mode, step)  # from the local shards; updates are not measured sharded
            return
        self.post_step.take_snapshot(self.plans, mode, step)
        self.weights_before(state, mode, step)

    def weights_before(self, state: StepState, mode: str, step: int) -> None:
        """Weights as the step's forward used them (before the update). The fused CPU pass takes
        them from the snapshot instead, after the step, in the same read."""
        if self.post_step.fused_cpu(self.plans, mode, step):
            return
        self.weights_now(state, mode, step)

    def weights_now(self, state: StepState, mode: str, step: int) -> None:
        due = self.plans.weight.due(mode, step)
        if not due or state.weights_taken:
            return
        launched = self._launch(self.plans.weight, due, None)
        if launched.dropped:
            return
        state.weights_taken = True
        self._consumer.put(StatsItem(step, mode, "weight", launched.names, launched.names_arrow,
                                     launched.result_rows, launched.pending,
                                     histogram=self.plans.weight.histogram(due), exchange=launched.exchange))

    def after_step(self, state: StepState, mode: str, step: int) -> None:
        """At probe.step(): updates, and weights when no optimizer stepped (eval) or when the fused
        CPU pass measures them from the snapshot."""
        if not state.optimizer_stepped or (self.distribution is not None and self.distribution.sharded):
            self.weights_now(state, mode, step)  # nothing changed them this step (eval, or no optimizer)
            return
        weight_due: Due = () if state.weights_taken else self.plans.weight.due(mode, step)
        weights_taken, layout_changed = self.post_step.run(self.plans, mode, step, weight_due)
        state.weights_taken |= weights_taken
        self.stale |= layout_changed  # shapes moved under us (e.g. param.data replaced): rebuild next step

    def activations(self, labels: list[str], tensors: list[torch.Tensor], mode: str, step: int,
                    kind: str = "activation", origin_only: bool = False) -> None:
        """One fused launch over tensors kept by forward (or backward) hooks. origin_only: the
        NaN/Inf origin's measurement, kept by the consumer only when some tensor is non-finite."""
        histogram = self._activation_histogram and not origin_only
        try:
            pending = self._computer.launch(tensors, None, histogram=histogram, backend=self.config.backend)
        except ResultsRingFull:
            self._consumer.dropped[f"{kind} (results ring full)"] += 1
            return
        self._consumer.put(StatsItem(step, mode, kind, labels, pa.array(labels, pa.string()),
                                     np.arange(len(labels)), pending, histogram=histogram, origin_only=origin_only))

    def launch(self, kind: str, table: Table, histogram: bool) -> PendingStats | None:
        """Launches one kind's table; None when the GPU's results ring is full (the step's
        measurement of that kind is dropped and counted, training does not wait)."""
        try:
            return self._computer.launch_table(table, histogram=histogram, backend=self.config.backend)
        except ResultsRingFull:
            self._consumer.dropped[f"{kind} (results ring full)"] += 1
            return None

    def model_inputs(self, args: Any, kwargs: Any, mode: str, step: int) -> None:
        """Counts of the configured token ids among the model's input_ids (first integer tensor)."""
        if not any(c.due(mode, step) for c in self.config.collections if c.kind == "input"):
            return
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = next((a for a in args if isinstance(a, torch.Tensor) and not a.is_floating_point()), None)
        if ids is not None:
            ids = ids.detach()
            counts = {token: (ids == token_id).sum() for token, token_id in self.config.token_ids.items()}
            self._consumer.put(InputItem(step, mode, "input_ids", counts, ids.numel()))

    def report_skipped(self, kind: str, names: Sequence[str], skipped: Mapping[int, str]) -> None:
        """Names, once each, the tensors a kind cannot measure; the rest of the kind is still measured."""
        for row, why in skipped.items():
            self._event({"type": "tensor_skipped", "kind": kind, "tensor": names[row], "reason": why})

    def _launch(self, plan: KindPlan, due: Due, attr: str | None) -> Launched:
        selection = plan.selection(due)
        distribution = self.distribution
        gathered = selection.table.gather(attr if distribution is None else distribution.attr(attr))
        if gathered.layout_changed:  # a resized or moved parameter: rebuild the tables next step
            self.stale = True
        kind = "weight" if attr is None else attr
        if gathered.skipped:
            self.report_skipped(kind, selection.names, gathered.skipped)
        table, rows, exchange = gathered.table, gathered.rows, None
        if distribution is not None:  # this rank reduces its share; the consumer exchanges the rest
            mine, exchange = distribution.split(id(selection), selection.table.params)
            kept = mine[rows]
            if not kept.all():
                table, rows = table.subset(np.flatnonzero(kept)), rows[kept]
        pending = self.launch(kind, table, plan.histogram(due)) if len(table) else None
        result_rows = np.full(len(selection.names), -1, np.int64)
        result_rows[rows] = np.arange(len(rows))
        return Launched(selection.names, selection.names_arrow, result_rows, pending,
                        bool(gathered.present.any()), exchange)
