"""Probe: watches a model and its optimizers during training and records a run directory.

    with gradprobe.Probe(model, optimizer, out_dir="runs/exp1") as probe:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            probe.step(loss=loss)
            if probe.should_stop:
                break

Where each kind is taken (the training thread only gathers pointers and launches):
- gradients: in the first optimizer step-pre hook of an iteration (after accumulation and after a
  GradScaler unscaled them), or earlier when clip_grad_norm_ runs, so they are seen before
  clipping; with no optimizer step, at probe.step() if they still exist;
- weights and updates: at probe.step(), after every optimizer has stepped, in one fused launch;
  updates against a snapshot taken before the first optimizer step, only on steps that record them;
- activations: forward hooks attached only for due steps, one fused launch per forward;
- losses, metrics, learning rate, loss scale and gradprobe's own time: scalars read one step later.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch

from ..stats import StatsComputer
from ..stats.inputs import COPY_A_TO_B, NO_HIST_FOR_A, ROW_OF_B, Table
from ..store.writer import RunWriter, prepare_run_dir, update_meta, write_json_atomic
from ..store.schema import META_FILE
from .activations import ActivationCapture, select_modules
from .config import MODES, Collection, ProbeConfig, resolve_config
from .consumer import Consumer, InputItem, Observer, PredictionItem, ScalarItem, StatsItem
from .meta import build_meta, parameter_groups
from .tensor_table import TensorTable
from . import clip_hook

ConfigLike = ProbeConfig | str | Path | Mapping[str, Any] | None


class _KindPlan:
    """The parameters one tensor kind can measure, and a cached table per set of due collections."""

    def __init__(self, collections: list[Collection], names: list[str], aliases: list[list[str]],
                 params: list[torch.nn.Parameter], trainable_only: bool) -> None:
        self.collections = collections
        self._names, self._aliases, self._params = names, aliases, params
        self._trainable_only = trainable_only
        self._cache: dict[tuple[str, ...], tuple[np.ndarray, list[str], pa.Array, TensorTable]] = {}

    def due(self, mode: str, step: int) -> tuple[str, ...]:
        return tuple(c.name for c in self.collections if c.due(mode, step))

    def histogram(self, due: tuple[str, ...]) -> bool:
        return any(c.histogram for c in self.collections if c.name in due)

    def selection(self, due: tuple[str, ...]) -> tuple[np.ndarray, list[str], pa.Array, TensorTable]:
        """(parameter indices, names, names as Arrow, native table) for these due collections."""
        cached = self._cache.get(due)
        if cached is None:
            chosen = [c for c in self.collections if c.name in due]
            index = [i for i, (name, aliases, p) in enumerate(zip(self._names, self._aliases, self._params))
                     if (p.requires_grad or not self._trainable_only)
                     and any(c.selects(n) for c in chosen for n in aliases)]
            names = [self._names[i] for i in index]
            cached = (np.asarray(index, np.int64), names, pa.array(names, pa.string()),
                      TensorTable([self._params[i] for i in index]))
            self._cache[due] = cached
        return cached


@dataclass
class _PostStepLayout:
    """The fused post-step launch for one combination of due weight and update collections."""

    weight_names: list[str]
    weight_names_arrow: pa.Array
    weight_part: np.ndarray  # parameter indices: the weight selection, then updated parameters outside it
    weight_table: TensorTable
    update_index: np.ndarray
    update_names: list[str]
    update_names_arrow: pa.Array
    update_table: TensorTable | None
    ratio_positions: np.ndarray  # per updated parameter: its position in weight_part


class Probe:
    """Records gradients, weights, updates, activations, inputs, losses and metrics of a training run."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
                 *, out_dir: str | Path, config: ConfigLike = None, rules: Iterable[Any] | str | None = None,
                 actions: Iterable[Any] | None = None, exist: str = "error",
                 scaler: Any = None, observers: Iterable[Observer] = ()) -> None:
        self.config = resolve_config(config)
        self.out_dir = Path(out_dir)
        self.model = model
        self.optimizers = [] if optimizer is None else (
            list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer])
        self.scaler = scaler
        self.rank, self.world_size = _distributed_rank()
        self._should_stop = False
        self.stop_reason: str | None = None
        self._closed = False
        self._warned_after_close = False
        self._mode = "train"
        self._steps = dict.fromkeys(MODES, 0)
        self._overhead = 0.0
        self._grads_taken = False
        self._optimizer_stepped = False
        self._weights_taken = False
        self._snapshot_step = -1  # the step whose pre-update weights the snapshot holds
        # Filled by _read_parameters: the snapshot that updates are measured against is allocated once,
        # and only if updates are recorded.
        self._snapshots: list[torch.Tensor] | None = None
        self._snapshot_tables: dict[tuple[str, ...], TensorTable] = {}
        self._layouts: dict[tuple[tuple[str, ...], tuple[str, ...]], _PostStepLayout] = {}

        prepare_run_dir(self.out_dir, exist if self.rank == 0 else "append")
        self._writer = RunWriter(self.out_dir, self.rank, self.config.store)
        groups = self._read_parameters()
        if self.rank == 0:
            meta_path = self.out_dir / META_FILE
            meta = build_meta(model, groups, self.config.to_dict(), self.rank, self.world_size)
            if meta_path.exists():  # appending: keep the first session's start
                update_meta(self.out_dir, status="running", config=meta["config"])
            else:
                write_json_atomic(meta_path, meta)
        self._computer = StatsComputer(self.config.cpu_threads)
        self._input_collections = [c for c in self.config.collections if c.kind == "input"]
        self._activation_collections = [c for c in self.config.collections if c.kind == "activation"]

        # Rules: None means gradprobe.rules.default(); [] turns them off. Actions consume findings.
        from ..rules.engine import RuleEngine
        from ..rules.registry import resolve as resolve_rules

        rule_list = resolve_rules(rules) if rules is None or isinstance(rules, str) else list(rules)
        self.engine = RuleEngine(rule_list, actions, probe=self) if rule_list or actions else None
        observer_list = list(observers)
        if self.engine is not None:
            observer_list.append(self.engine)
        self._consumer = Consumer(self._writer.write, observer_list)

        self._handles: list[Any] = []
        for opt in self.optimizers:
            self._handles.append(opt.register_step_pre_hook(self._before_optimizer_step))
        self._handles.append(clip_hook.register(self._before_clipping))
        # A parameter or module registered anywhere in the model (e.g. a resized embedding) rebuilds the tables.
        self._handles.append(torch.nn.modules.module.register_module_parameter_registration_hook(self._on_registration))
        self._handles.append(torch.nn.modules.module.register_module_module_registration_hook(self._on_registration))
        self._activations = self._make_activation_capture()
        if self._input_collections and self.config.token_ids:
            self._handles.append(model.register_forward_pre_hook(self._on_model_inputs, with_kwargs=True))
        self._arm_activations()
        self._writer.event({"type": "start", "preset": self.config.preset, "parameters": len(self._params)})

    # -- public API -------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switches the mode (train / eval / predict); each mode counts its own steps."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        if mode != self._mode:
            self._mode = mode
            if self._activations is not None:
                self._activations.disarm()
            self._arm_activations()

    def current_step(self, mode: str | None = None) -> int:
        return self._steps[mode or self._mode]

    def step(self, loss: Any = None, losses: Mapping[str, Any] | None = None,
             metrics: Mapping[str, Any] | None = None, mode: str | None = None) -> None:
        """Ends one step (one optimizer step in training): records what is due, then advances."""
        if self._closed:
            if not self._warned_after_close:
                self._warned_after_close = True
                warnings.warn("gradprobe: Probe.step() after close() is ignored", RuntimeWarning, stacklevel=2)
            return
        started = time.perf_counter()
        if mode is not None and mode != self._mode:
            self.set_mode(mode)
        mode, step = self._mode, self._steps[self._mode]
        try:
            if not self._optimizer_stepped:
                self._refresh_if_stale()  # never between the snapshot and the update it serves
            if mode == "train" and not self._grads_taken:
                self._capture_grads(require_present=True)
            self._capture_weights_and_updates(mode, step)
            self._record_scalars(mode, step, loss, losses, metrics, started)
        except Exception as error:  # recording must never break training
            self._record_failure("step", error)
        self._steps[mode] += 1
        self._grads_taken = self._optimizer_stepped = self._weights_taken = False
        if self._activations is not None and not self._activations.armed:
            self._arm_activations()
        if self.engine is not None:
            self.engine.after_step(self)

    @property
    def should_stop(self) -> bool:
        """True once a stop was requested (StopTraining, probe.stop()). In a single process a request
        counts at once; across ranks it counts at the end of the step on which every rank agreed."""
        if self._should_stop:
            return True
        if self.world_size == 1 and self.engine is not None and self.engine._stop_reason is not None:
            self.stop(self.engine._stop_reason)
            return True
        return False

    @property
    def findings(self) -> list:
        """Findings so far (rules run on the consumer thread; call flush() to wait for the latest)."""
        return list(self.engine.findings) if self.engine is not None else []

    def observe_predictions(self, labels: Any, predictions: Any, mode: str | None = None) -> None:
        """Labels and predicted classes of a batch, for ClassImbalance and Confusion."""
        if self._closed or self.engine is None:
            return
        mode = mode or self._mode
        self._consumer.put(PredictionItem(self._steps[mode], mode, _host_array(labels), _host_array(predictions)))

    def stop(self, reason: str) -> None:
        """Asks the training loop to stop (sets should_stop); integrations stop their trainer."""
        if not self._should_stop:
            self._should_stop = True
            self.stop_reason = reason
            self._writer.event({"type": "stop_requested", "reason": reason, "steps_completed": self._steps[self._mode],
                                "mode": self._mode})

    def flush(self) -> None:
        """Waits until everything recorded so far is processed and written as closed parts."""
        self._consumer.drain()
        self._writer.flush()

    def close(self, error: BaseException | None = None) -> None:
        """Removes every hook, writes what is pending, and closes the run. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._activations is not None:
            self._activations.disarm()
        self._consumer.close()
        if self.engine is not None:
            self.engine.close()
        status = "failed" if error is not None else ("stopped" if self._should_stop else "completed")
        self._writer.event({"type": "close", "status": status, "steps": dict(self._steps),
                            **({"error": repr(error)} if error is not None else {})})
        self._writer.close()
        if self._writer.truncated:
            self._writer.event({"type": "truncated", "rows_lost": self._writer.rows_lost})
        if self.rank == 0:
            update_meta(self.out_dir, status=status, end_time=time.time(), steps=dict(self._steps),
                        truncated=self._writer.truncated, rows_written=self._writer.rows_written)

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)

    # -- capture ----------------------------------------------------------------------------------
    def _launch(self, plan: _KindPlan, due: tuple[str, ...], attr: str | None):
        index, names, names_arrow, table = plan.selection(due)
        gathered = table.gather(attr)
        if gathered.layout_changed:  # a resized or moved parameter: rebuild the tables next step
            self._stale = True
        pending = None
        if len(gathered.table):
            pending = self._computer.launch_table(gathered.table, histogram=plan.histogram(due),
                                                  backend=self.config.backend)
        result_rows = np.full(len(names), -1, np.int64)
        result_rows[gathered.rows] = np.arange(len(gathered.rows))
        return names, names_arrow, result_rows, pending

    def _read_parameters(self) -> list:
        """(Re)reads the model's parameters and builds the per-kind plans."""
        groups = parameter_groups(self.model)
        self._names = [name for name, _, _ in groups]
        self._params = [p for _, p, _ in groups]
        aliases = [names for _, _, names in groups]
        by_kind = {k: [c for c in self.config.collections if c.kind == k] for k in ("grad", "weight", "update")}
        self._grad_plan = _KindPlan(by_kind["grad"], self._names, aliases, self._params, trainable_only=True)
        self._weight_plan = _KindPlan(by_kind["weight"], self._names, aliases, self._params, trainable_only=False)
        self._update_plan = _KindPlan(by_kind["update"], self._names, aliases, self._params, trainable_only=True)
        self._module_ids = {id(m) for m in self.model.modules()}
        self._all_cpu = all(p.device.type == "cpu" for p in self._params)
        self._stale = False
        self._layouts = {}
        self._snapshots = None
        self._snapshot_tables = {}
        self._snapshot_step = -1
        return groups

    def _on_registration(self, module: torch.nn.Module, name: str, value: Any) -> None:
        if id(module) in getattr(self, "_module_ids", ()):
            self._stale = True

    def _refresh_if_stale(self) -> None:
        if not self._stale:
            return
        groups = self._read_parameters()
        self._writer.event({"type": "model_changed", "step": self._steps[self._mode], "parameters": len(groups)})
        if self.rank == 0:
            update_meta(self.out_dir, parameters=[{"name": n, "shape": list(p.shape), "dtype": str(p.dtype),
                                                   "requires_grad": p.requires_grad, "aliases": a[1:]}
                                                  for n, p, a in groups])

    def _capture_grads(self, require_present: bool = False) -> None:
        due = self._grad_plan.due(self._mode, self._steps[self._mode])
        if not due:
            return
        names, names_arrow, rows, pending = self._launch(self._grad_plan, due, "grad")
        if require_present and pending is None:
            return  # no gradients exist at probe.step(): nothing happened this step
        self._grads_taken = True
        self._consumer.put(StatsItem(self._steps[self._mode], self._mode, "grad", names, names_arrow, rows, pending,
                                     histogram=self._grad_plan.histogram(due)))

    def _fused_cpu(self, mode: str, step: int) -> bool:
        """Whether this step's weights and updates come from the fused CPU pass (after the step)."""
        return (mode == "train" and self._all_cpu and self.config.backend in (None, "cpu")
                and bool(self._update_plan.due(mode, step)))

    def _capture_weights_before(self, mode: str, step: int) -> None:
        """Weights as the step's forward used them (before the update). The fused CPU pass takes
        them from the snapshot instead, after the step, in the same read."""
        weight_due = self._weight_plan.due(mode, step)
        if not weight_due or self._weights_taken or self._fused_cpu(mode, step):
            return
        names, names_arrow, rows, pending = self._launch(self._weight_plan, weight_due, None)
        self._weights_taken = True
        self._consumer.put(StatsItem(step, mode, "weight", names, names_arrow, rows, pending,
                                     histogram=self._weight_plan.histogram(weight_due)))

    def _capture_weights_and_updates(self, mode: str, step: int) -> None:
        """After the step: updates (w_after - w_before, with |dw| / |w_before|); weights too when no
        optimizer stepped (eval) or when the fused CPU pass measures them from the snapshot."""
        if not self._optimizer_stepped:
            self._capture_weights_before(mode, step)  # nothing changed them this step
            return
        update_due = self._update_plan.due(mode, step) if self._snapshot_step == step else ()
        weight_due = () if self._weights_taken else self._weight_plan.due(mode, step)
        if not update_due:
            return
        layout = self._post_step_layout(weight_due, update_due)
        after = layout.update_table.gather(None).table
        before = self._snapshot_table(update_due, layout.update_index).gather(None).table
        if len(after) != len(layout.update_index) or len(before) != len(after):
            return  # a parameter vanished mid-step; the next snapshot realigns
        if self._fused_cpu(mode, step):
            weights = layout.weight_table.gather(None)
            if weights.layout_changed:
                self._stale = True  # shapes moved under us (e.g. param.data replaced): rebuild next step
            self._fused_cpu_post_step(mode, step, layout, weight_due, after, before, weights,
                                      self._update_plan.histogram(update_due), self._weight_plan.histogram(weight_due))
            return
        # Elsewhere (GPU): the differences, then the snapshot itself for |dw| / |w_before|.
        k = len(after)
        diff = Table(after.a_ptrs, before.a_ptrs, after.numels, after.dtypes_a, before.dtypes_a,
                     after.device_codes, after.source, [], None)
        pending = self._computer.launch_table(_concat_tables(diff, before), histogram=self._update_plan.histogram(update_due),
                                              backend=self.config.backend)
        self._consumer.put(StatsItem(step, mode, "update", layout.update_names, layout.update_names_arrow,
                                     np.arange(k), pending, ratio_rows=k + np.arange(k)))

    def _fused_cpu_post_step(self, mode: str, step: int, layout: "_PostStepLayout", weight_due: tuple[str, ...],
                             after: Table, before: Table, weights, histogram: bool, weight_histogram: bool) -> None:
        """Rows: the k update pairs (w_after, snapshot = w_before), then the weight-part parameters
        outside the update set (frozen ones: unchanged by the step). The pairs' extra rows measure the
        snapshot before the pass overwrites it with w_after for the next step."""
        k = len(after)
        in_pairs = np.zeros(len(layout.weight_part), bool)
        in_pairs[layout.ratio_positions] = True
        singles = np.flatnonzero(~in_pairs)
        present_single = np.intersect1d(singles, weights.rows)
        single_table = weights.table.subset(np.searchsorted(weights.rows, present_single))
        n = k + len(present_single)
        copy_next = bool(self._update_plan.due(mode, step + 1))
        pairs = Table(after.a_ptrs, before.a_ptrs, after.numels, after.dtypes_a, before.dtypes_a,
                      after.device_codes, after.source, [], None)
        table = _concat_tables(pairs, single_table)
        table.a_rows = np.concatenate([n + np.arange(k), np.full(len(present_single), -1)]).astype(np.int64)
        flags = ROW_OF_B | (COPY_A_TO_B if copy_next else 0) | (0 if weight_histogram else NO_HIST_FOR_A)
        table.copy = np.concatenate([np.full(k, flags), np.zeros(len(present_single))]).astype(np.int64)
        pending = self._computer.launch_table(table, histogram=histogram or weight_histogram,
                                              backend=self.config.backend)
        if copy_next:
            self._snapshot_step = step + 1
        weight_rows = np.full(len(layout.weight_part), -1, np.int64)
        weight_rows[layout.ratio_positions] = n + np.arange(k)
        weight_rows[present_single] = k + np.arange(len(present_single))
        if weight_due:
            self._weights_taken = True
            self._consumer.put(StatsItem(step, mode, "weight", layout.weight_names, layout.weight_names_arrow,
                                         weight_rows[:len(layout.weight_names)], pending, histogram=weight_histogram))
        self._consumer.put(StatsItem(step, mode, "update", layout.update_names, layout.update_names_arrow,
                                     np.arange(k), pending, ratio_rows=n + np.arange(k)))

    def _post_step_layout(self, weight_due: tuple[str, ...], update_due: tuple[str, ...]) -> "_PostStepLayout":
        key = (weight_due, update_due)
        layout = self._layouts.get(key)
        if layout is None:
            empty = (np.zeros(0, np.int64), [], pa.array([], pa.string()), None)
            w_index, w_names, w_arrow, _ = self._weight_plan.selection(weight_due) if weight_due else empty
            u_index, u_names, u_arrow, u_table = self._update_plan.selection(update_due) if update_due else empty
            position = {int(p): i for i, p in enumerate(w_index)}
            extra = [int(p) for p in u_index if int(p) not in position]
            for p in extra:
                position[p] = len(position)
            weight_part = np.concatenate([w_index, np.asarray(extra, np.int64)]).astype(np.int64)
            layout = self._layouts[key] = _PostStepLayout(
                weight_names=w_names, weight_names_arrow=w_arrow, weight_part=weight_part,
                weight_table=TensorTable([self._params[i] for i in weight_part]),
                update_index=u_index, update_names=u_names, update_names_arrow=u_arrow, update_table=u_table,
                ratio_positions=np.asarray([position[int(p)] for p in u_index], np.int64))
        return layout

    def _snapshot_table(self, due: tuple[str, ...], index: np.ndarray) -> TensorTable:
        table = self._snapshot_tables.get(due)
        if table is None:
            assert self._snapshots is not None
            table = self._snapshot_tables[due] = TensorTable([self._snapshots[i] for i in index])
        return table

    def _take_snapshot(self) -> None:
        """Copies the weights that updates will be measured against (only on steps that record updates,
        and only if the previous step's fused CPU pass did not already leave them in the snapshot)."""
        mode, step = self._mode, self._steps[self._mode]
        if not self._update_plan.due(mode, step) or self._snapshot_step == step:
            return
        params = self._params
        if self._snapshots is None:
            self._snapshots = [torch.empty_like(p, memory_format=torch.contiguous_format) for p in params]
            self._snapshot_tables.clear()
        with torch.no_grad():
            torch._foreach_copy_(self._snapshots, [p.detach() for p in params])
        self._snapshot_step = step

    # -- hooks ------------------------------------------------------------------------------------
    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self._optimizer_stepped or self._closed:
            return
        started = time.perf_counter()
        self._optimizer_stepped = True
        try:
            self._refresh_if_stale()
            if not self._grads_taken:
                self._capture_grads()
            self._take_snapshot()
            self._capture_weights_before(self._mode, self._steps[self._mode])
        except Exception as error:
            self._record_failure("optimizer step hook", error)
        self._overhead += time.perf_counter() - started

    def _before_clipping(self, parameters: Any) -> None:
        if self._grads_taken or self._closed or self._mode != "train":
            return
        started = time.perf_counter()
        try:
            self._capture_grads()
        except Exception as error:
            self._record_failure("clip hook", error)
        self._overhead += time.perf_counter() - started

    def _make_activation_capture(self) -> ActivationCapture | None:
        if not self._activation_collections:
            return None
        patterns = self.config.activation_modules

        def selects(name: str) -> bool:
            if patterns and not any(re.search(p, name) for p in patterns):
                return False
            return any(c.selects(name) for c in self._activation_collections)

        modules = select_modules(self.model, selects, bool(patterns))
        return ActivationCapture(self.model, modules, self._on_activations)

    def _arm_activations(self) -> None:
        if self._activations is None or self._closed:
            return
        step = self._steps[self._mode]
        if any(c.due(self._mode, step) for c in self._activation_collections):
            self._activations.arm()

    def _on_activations(self, labels: list[str], tensors: list[torch.Tensor]) -> None:
        started = time.perf_counter()
        try:
            histogram = any(c.histogram for c in self._activation_collections)
            pending = self._computer.launch(tensors, None, histogram=histogram, backend=self.config.backend)
            self._consumer.put(StatsItem(self._steps[self._mode], self._mode, "activation", labels,
                                         pa.array(labels, pa.string()), np.arange(len(labels)), pending))
        except Exception as error:
            self._record_failure("activation capture", error)
        self._overhead += time.perf_counter() - started

    def _on_model_inputs(self, module, args, kwargs) -> None:
        mode, step = self._mode, self._steps[self._mode]
        if not any(c.due(mode, step) for c in self._input_collections):
            return
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = next((a for a in args if isinstance(a, torch.Tensor) and not a.is_floating_point()), None)
        if ids is None:
            return
        ids = ids.detach()
        counts = {token: (ids == token_id).sum() for token, token_id in self.config.token_ids.items()}
        self._consumer.put(InputItem(step, mode, "input_ids", counts, ids.numel()))

    # -- scalars ----------------------------------------------------------------------------------
    def _record_scalars(self, mode: str, step: int, loss: Any, losses: Mapping[str, Any] | None,
                        metrics: Mapping[str, Any] | None, started: float) -> None:
        values: dict[str, Any] = {}
        if loss is not None:
            values["loss"] = loss
        for name, value in (losses or {}).items():
            values[f"loss/{name}"] = value
        for name, value in (metrics or {}).items():
            values[f"metric/{name}"] = value
        if mode == "train" and self.optimizers:
            values["lr"] = float(self.optimizers[0].param_groups[0].get("lr", float("nan")))
        if self.scaler is not None and hasattr(self.scaler, "get_scale"):
            scale = getattr(self.scaler, "_scale", None)
            values["loss_scale"] = scale if isinstance(scale, torch.Tensor) else float(self.scaler.get_scale())
        ready = None
        for name, value in list(values.items()):
            if isinstance(value, torch.Tensor):
                value = value.detach()
                value = value.float().mean() if value.numel() != 1 else value.reshape(())
                if value.is_cuda:
                    # Into pinned memory: a copy to pageable memory would synchronise the host.
                    host = torch.empty((), dtype=value.dtype, pin_memory=True)
                    value = host.copy_(value, non_blocking=True)
                    ready = torch.cuda.Event()
                values[name] = value
        if ready is not None:
            ready.record()
        self._overhead += time.perf_counter() - started
        values["gradprobe/overhead_ms"] = self._overhead * 1e3
        self._overhead = 0.0
        self._consumer.put(ScalarItem(step, mode, values, ready))

    def _record_failure(self, where: str, error: Exception) -> None:
        warnings.warn(f"gradprobe: {where} failed, training continues: {error!r}", RuntimeWarning, stacklevel=3)
        self._writer.event({"type": "error", "where": where, "error": repr(error)})


def _concat_tables(*tables: Table) -> Table:
    if len(tables) == 1:
        return tables[0]
    return Table(*(np.concatenate([getattr(t, f) for t in tables])
                   for f in ("a_ptrs", "b_ptrs", "numels", "dtypes_a", "dtypes_b", "device_codes")),
                 tables[0].source if all(t.source == tables[0].source for t in tables) else "mixed", [], None)


def _host_array(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu").numpy()
    return np.asarray(values)


def _distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
