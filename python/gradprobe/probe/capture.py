"""Tensor capture on the training thread: gathers pointers, launches the fused pass, enqueues.

Where each kind is taken:
- gradients: at the end of the backward that completes them (grad_completion.py), before any
  clipping, unscaling or other in-place change, whatever function makes it; under gradient
  accumulation only the backward that ends the optimizer step is measured (told by the framework's
  signal, DDP's no_sync, or the number of backwards per step learned from the previous steps). The
  measurement is enqueued at the optimizer step (or at probe.step() when no optimizer stepped). When
  no measured backward preceded the step, the gradients are measured there, and if they changed in
  place since their backward, that is said once (warning, event, meta.json `gradient_capture`);
- weights and updates: at probe.step(), after every optimizer has stepped (post_step.py);
- activations: forward hooks armed only for due steps, one fused launch per forward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..own_warnings import warn
from ..stats import PendingStats, StatsComputer
from ..stats.backends import ResultsRingFull
from ..stats.inputs import Table
from .config import ProbeConfig
from .consumer import Consumer, InputItem, StatsItem
from .distributed import Distribution, Exchanged
from .loss_scale import LossScale
from .meta import ParameterGroups
from .plans import CapturePlans, Due, KindPlan
from .post_step import PostStepPass
from .tensor_table import TensorTable
from .tracing import tracing


@dataclass
class MeasuredGrads:
    """Gradients measured at a backward end, enqueued once the step is known to end after it."""

    item: StatsItem
    at_backward: int  # StepState.backward_ends when measured


@dataclass
class StepState:
    """What the current step has done so far; each step starts from a fresh one."""

    grads_taken: bool = False
    optimizer_stepped: bool = False
    weights_taken: bool = False
    overhead: float = 0.0  # seconds the training thread spent in gradprobe during this step
    backward_ends: int = 0  # backwards through the model's outputs that finished in this step
    measured: MeasuredGrads | None = None
    versions_at_end: np.ndarray | None = None  # gradient versions at the last unmeasured backward end


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
    warn(f"gradprobe: {record}", RuntimeWarning, stacklevel=2)


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
        self.loss_scale = LossScale()
        # Whose gradients' version counters tell whether gradients changed in place after their backward
        # (a clip or an unscale changes every one); set to the sentinel parameters by the probe.
        self.version_watch = TensorTable([])
        # Whether the backward now ending ends the step (True/False), or None when unknown: set by
        # integrations from their framework (accelerate's sync_gradients); DDP's no_sync is seen here.
        self.final_backward_signal: Callable[[], bool | None] | None = None
        self._backwards_per_step: int | None = None  # learned: the last two steps had this many
        self._previous_backwards = 0
        self._measure_every_backward = False  # after a step whose gradients changed before they were measured
        self._said: set[str] = set()  # gradient_capture notes already given (once each)
        self.gradient_capture_notes: dict[str, dict[str, Any]] = {}  # for meta.json

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

    # -- gradients ------------------------------------------------------------------------------
    def on_backward_end(self, state: StepState, mode: str, step: int) -> PendingStats | None:
        """A backward through the model finished: its gradients are complete and not yet changed.
        Measured now when this backward ends the step (or that is not known); else only their versions
        are kept, to tell at the optimizer step whether they changed since. Returns the measurement."""
        state.backward_ends += 1
        if mode != "train" or state.grads_taken or not self.plans.grad.due(mode, step):
            return None
        if self._ends_step(state):
            self._measure_grads(state, mode, step, at_backward=True)
            return state.measured.item.pending if state.measured is not None else None
        state.versions_at_end = self.version_watch.versions("grad")
        return None

    def _ends_step(self, state: StepState) -> bool:
        signal = self.final_backward_signal() if self.final_backward_signal is not None else None
        if signal is None:
            signal = _ddp_sync_signal(self.model)
        if signal is not None:
            return signal
        period = self._backwards_per_step
        return self._measure_every_backward or period is None or state.backward_ends >= period

    def settle_grads(self, state: StepState, mode: str, step: int, optimizer: torch.optim.Optimizer | None,
                     require_present: bool = False) -> None:
        """Enqueues this step's gradients (at its first optimizer step, or at probe.step() without one):
        the measurement of the backward that ended it, or a measurement now."""
        if state.grads_taken or mode != "train":
            return
        if not self.plans.grad.due(mode, step):
            return
        measured = state.measured
        if measured is not None and measured.at_backward == state.backward_ends:
            if measured.item.grad_scale is None:
                measured.item.grad_scale = self.loss_scale.at_optimizer_step(optimizer)
            state.measured = None
            state.grads_taken = True
            self._consumer.put(measured.item, urgent=_nonfinite(measured.item))
            return
        if measured is not None:  # superseded by a later, unmeasured backward
            _discard_item(measured.item)
            state.measured = None
        changed = (state.backward_ends > 0 and state.versions_at_end is not None
                   and self._changed_since(state.versions_at_end))
        self._measure_grads(state, mode, step, at_backward=False, require_present=require_present)
        measured = state.measured
        if measured is None:
            return
        state.measured = None
        if measured.item.grad_scale is None:
            measured.item.grad_scale = self.loss_scale.at_optimizer_step(optimizer)
        state.grads_taken = True
        self._consumer.put(measured.item, urgent=_nonfinite(measured.item))
        if changed:
            self._say_once("changed", step, "gradients changed in place between the backward that completed them "
                           "and the optimizer step, before gradprobe measured them (it expected another backward "
                           "in this step): recorded as they were at the optimizer step, e.g. after clipping. From "
                           "now on every backward is measured")
            self._measure_every_backward = True
        elif state.backward_ends == 0 and not require_present:
            self._say_once("not_observed", step, "no backward through the model's outputs was seen before this "
                           "optimizer step: gradients are read at the step, after any clipping done before it")

    def _learn_backwards_per_step(self, state: StepState) -> None:
        """Known once two steps in a row had the same number of backwards (1 without accumulation)."""
        count = state.backward_ends
        if count:
            self._backwards_per_step = count if count == self._previous_backwards else None
            self._previous_backwards = count

    def _changed_since(self, versions: np.ndarray) -> bool:
        return not np.array_equal(versions, self.version_watch.versions("grad"))

    def _say_once(self, what: str, step: int, message: str) -> None:
        if what in self._said:
            return
        self._said.add(what)
        warn(f"gradprobe: {message} (step {step})", RuntimeWarning, stacklevel=4)
        self._event({"type": "gradient_capture", "issue": what, "step": step, "message": message})
        self.gradient_capture_notes[what] = {"step": step, "message": message}

    def _measure_grads(self, state: StepState, mode: str, step: int, at_backward: bool,
                       require_present: bool = False) -> None:
        due = self.plans.grad.due(mode, step)
        # At a backward end the gradients still carry the loss scale; at the optimizer step a GradScaler
        # has unscaled them already (or left them to a fused optimizer: loss_scale.at_optimizer_step).
        scale = self.loss_scale.read() if at_backward else None
        launched = self._launch(self.plans.grad, due, "grad")
        if launched.dropped:
            state.grads_taken = True  # this step's gradient measurement is dropped (and counted), not retried
            return
        if require_present and not launched.any_present:
            return  # no gradients at probe.step(): nothing happened this step
        if state.measured is not None:
            _discard_item(state.measured.item)
        item = StatsItem(step, mode, "grad", launched.names, launched.names_arrow, launched.result_rows,
                         launched.pending, histogram=self.plans.grad.histogram(due), exchange=launched.exchange,
                         grad_scale=scale)
        state.measured = MeasuredGrads(item, state.backward_ends)

    def before_optimizer_step(self, state: StepState, mode: str, step: int,
                              optimizer: torch.optim.Optimizer | None = None) -> None:
        """Gradients (measured at the backward that ended the step), the snapshot for updates, the
        weights as used."""
        self.settle_grads(state, mode, step, optimizer)
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
        self._learn_backwards_per_step(state)
        if not state.optimizer_stepped or (self.distribution is not None and self.distribution.sharded):
            self.weights_now(state, mode, step)  # nothing changed them this step (eval, or no optimizer)
            return
        weight_due: Due = () if state.weights_taken else self.plans.weight.due(mode, step)
        weights_taken, layout_changed = self.post_step.run(self.plans, mode, step, weight_due)
        state.weights_taken |= weights_taken
        self.stale |= layout_changed  # shapes moved under us (e.g. param.data replaced): rebuild next step

    def activations(self, labels: list[str], tensors: list[torch.Tensor], mode: str, step: int,
                    kind: str = "activation", origin_only: bool = False) -> PendingStats | None:
        """One fused launch over tensors kept by forward (or backward) hooks. origin_only: the
        NaN/Inf origin's measurement, kept by the consumer only when some tensor is non-finite.
        Returns the measurement (None: dropped, the results ring was full)."""
        histogram = self._activation_histogram and not origin_only
        try:
            pending = self._computer.launch(tensors, None, histogram=histogram, backend=self.config.backend)
        except ResultsRingFull:
            self._consumer.dropped[f"{kind} (results ring full)"] += 1
            return None
        self._consumer.put(StatsItem(step, mode, kind, labels, pa.array(labels, pa.string()),
                                     np.arange(len(labels)), pending, histogram=histogram, origin_only=origin_only))
        return pending

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
        if tracing() or not any(c.due(mode, step) for c in self.config.collections if c.kind == "input"):
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
        if self.distribution is None and self.plans.all_cpu and self.config.backend in (None, "cpu"):
            fast = selection.table.measure_cpu(attr, plan.histogram(due), self.config.cpu_threads)
            if fast is not None:  # one native call: every present row read in place
                rows = selection.rows
                result_rows = rows if fast.present.all() else np.where(fast.present, rows, -1)
                return Launched(selection.names, selection.names_arrow, result_rows,
                                self._computer.pending(len(rows), fast, plan.histogram(due)), bool(fast.present.any()),
                                None)
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


def _nonfinite(item: StatsItem) -> bool:
    """Whether a measurement holds NaN/Inf, when that is known at once (CPU): the rules must see it now."""
    return bool(item.pending is not None and item.pending.any_nonfinite())


def _discard_item(item: StatsItem) -> None:
    if item.pending is not None and item.exchange is None:
        item.pending.discard()


def _ddp_sync_signal(model: torch.nn.Module) -> bool | None:
    """False inside DDP's no_sync() (a micro-batch whose gradients are not reduced), else None."""
    sync = getattr(model, "require_backward_grad_sync", None)
    return False if sync is False else None
