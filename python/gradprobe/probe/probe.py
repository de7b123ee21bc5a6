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

A facade: the run directory's lifecycle (session.py), what is captured when (capture.py, plans.py,
post_step.py), the hooks into torch (hooks.py), the consumer thread (consumer.py), the rules and
actions (gradprobe.rules, gradprobe.actions) and the cross-rank stop (stop.py).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..actions import Action, Log
from ..actions.basic import logger
from ..profiler import Profiler
from ..records import Observer
from ..rules import Finding, Rule
from ..stats import PendingStats
from ..thread_cpu import ThreadCpu
from .activations import first_tensor
from .capture import StepState, TensorCapture
from .config import MODES, ProbeConfig, resolve_config
from .consumer import Consumer, PredictionItem
from .distributed import Distribution, RankInfo, resolve_mode
from .hooks import ProbeHooks
from .lifeline import Lifeline, Terminated
from .loss_scale import LossScale
from .meta import ParameterGroups, model_facts
from .nonfinite_origin import LateNews, NonFiniteOrigin
from .scalars import scalar_item
from .session import RunSession
from .stop import StopAgreement
from .tensor_table import TensorTable
from .tracing import first_tensor_of, tracing
from .watch import Watch

ConfigLike = ProbeConfig | str | Path | Mapping[str, Any] | None
Optimizers = torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None


class Probe:
    """Records gradients, weights, updates, activations, inputs, losses and metrics of a training run.

    rules: None for gradprobe.rules.default(), [] for none, Rule objects, or a spec ("all", codes).
    actions: what consumes the findings (gradprobe.actions: StopTraining, Log, Email, Webhook).
    optimizer_hooks: False when the framework runs backward inside optimizer.step(closure) (Lightning):
    its step pre-hook would fire before the gradients exist; the framework calls gradients_ready().
    """

    def __init__(self, model: torch.nn.Module, optimizer: Optimizers = None, *, out_dir: str | Path,
                 config: ConfigLike = None, rules: Iterable[Rule] | str | None = None,
                 actions: Iterable[Action] | None = None, exist: str = "error", scaler: Any = None,
                 observers: Iterable[Observer] = (), optimizer_hooks: bool = True) -> None:
        self.config = resolve_config(config)
        self.out_dir = Path(out_dir)
        self.model = model
        self.optimizers: list[torch.optim.Optimizer] = (
            [] if optimizer is None else [optimizer] if isinstance(optimizer, torch.optim.Optimizer)
            else list(optimizer))
        self.scaler = scaler
        self.stop_reason: str | None = None
        self._should_stop = False
        self._closed = False
        self._warned_after_close = False
        self._mode = "train"
        self._steps = dict.fromkeys(MODES, 0)
        self._state = StepState()
        self._bad_scalars: set[str] = set()
        self._optimizer_hooks = optimizer_hooks
        self.cpu = ThreadCpu()  # gradprobe's threads (their CPU time is gradprobe's cost too)
        self._own_seconds = 0.0  # the training thread's time in gradprobe, all steps
        self._session = RunSession(self.out_dir, exist, self.config.store, self.cpu)
        self._steps.update(self._session.first_steps)  # an appended run continues its step numbers
        try:
            self._start(model, rules, actions, observers)
        except BaseException as error:  # a failed construction leaves nothing running and nothing locked
            self._abandon(error)
            raise

    def _start(self, model: torch.nn.Module, rules: Iterable[Rule] | str | None, actions: Iterable[Action] | None,
               observers: Iterable[Observer]) -> None:
        self.rank, self.world_size = self._session.rank, self._session.world_size
        self._stop = StopAgreement(self.world_size)
        self.rank_info = RankInfo.current()
        self.distributed = resolve_mode(self.config.distributed, model, self.world_size)
        if self.distributed != "off" and self.rank != 0:  # rank 0 sees every rank's statistics:
            rules, actions = [], []  # it alone runs the rules and acts; a stop reaches all (stop.py)
        elif actions is None:  # findings said as they fire, and summed up at the end (actions.Log)
            actions = [Log()] if self.config.print_findings else []
        self._watch = Watch(rules, actions, self._session.event, self.out_dir, self.cpu)
        self.engine = self._watch.engine
        self._consumer = Consumer(self._session.writer.write, [*observers, *self._watch.observers],
                                  max_items=self.config.max_queued_items,
                                  max_wait_seconds=self.config.max_queue_wait_seconds, cpu=self.cpu)
        self._capture = TensorCapture(model, self.config, self._consumer, self._session.event)
        self._capture.loss_scale = LossScale(self.scaler)
        if self.distributed != "off":
            self._capture.distribution = Distribution(self.distributed, self.rank, self.world_size)
        self._watch.give_facts(model_facts(model, self._capture.plans.groups))
        self._session.write_meta(model, self._capture.plans.groups, self.config.to_dict(), self.optimizers)
        self.profiler = Profiler(self.config.profiler, model=model, optimizers=self.optimizers, run_dir=self.out_dir,
                                 rank=self.rank, world_size=self.world_size, writer=self._session.writer,
                                 event=self._session.event, engine=self.engine, actions=actions or (),
                                 overhead=lambda: self._state.overhead, cpu=self.cpu)
        self._timer = self.profiler.timer
        self._inputs_wanted = bool(self.config.token_ids) and any(c.kind == "input" for c in self.config.collections)
        self._hooks = ProbeHooks(model, self.optimizers, self.config, self, self._on_activations)
        self._capture.version_watch = TensorTable(self._hooks.sentinels)
        self._origin: NonFiniteOrigin | None = None
        if self.config.nonfinite_origin:
            self._origin = NonFiniteOrigin(model, self._measure_for_origin, _any_nonfinite, self._hooks.sentinels,
                                           replay=self.world_size == 1)
            self._consumer.observers.append(LateNews(self._origin))
        self._hooks.arm_activations(self._mode, self._steps[self._mode])
        self.report_path: Path | None = None  # the report this probe wrote (interrupted or never closed)
        self._lifeline = Lifeline(self._close_at_end)
        self._session.event({"type": "start", "preset": self.config.preset,
                             "parameters": len(self._capture.plans.params),
                             "first_step": dict(self._session.first_steps), "profiler": self.profiler.facts,
                             "distributed": self.distributed, **self.rank_info.to_dict()})

    def _abandon(self, error: BaseException) -> None:
        self._closed = True
        timeout = self.config.close_timeout_seconds
        # Whatever _start created before it failed, in the order close() stops it.
        for part, stop in (("_lifeline", lambda lifeline: lifeline.release()),
                           ("_hooks", lambda hooks: hooks.remove()),
                           ("profiler", lambda profiler: profiler.close(timeout)),
                           ("_consumer", lambda consumer: consumer.close(timeout)),
                           ("_watch", lambda watch: watch.close(timeout))):
            if hasattr(self, part):
                try:
                    stop(getattr(self, part))
                except Exception:  # the construction's own error is the one to raise
                    pass
        self._session.abandon(error, timeout)

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switches the mode (train / eval / predict) until the next set_mode; each mode counts its own steps."""
        if _checked(mode) != self._mode:
            self._mode = mode
            self._hooks.disarm_activations()
            self._hooks.arm_activations(mode, self._steps[mode])

    def current_step(self, mode: str | None = None) -> int:
        return self._steps[mode or self._mode]

    def step(self, loss: Any = None, losses: Mapping[str, Any] | None = None,
             metrics: Mapping[str, Any] | None = None, mode: str | None = None) -> None:
        """Ends one step (one optimizer step in training): records what is due, then advances that
        mode's counter. mode= applies to this call only (set_mode is the persistent switch)."""
        if self._closed:
            if not self._warned_after_close:
                self._warned_after_close = True
                warnings.warn("gradprobe: Probe.step() after close() is ignored", RuntimeWarning, stacklevel=2)
            return
        started = time.perf_counter()
        mode = self._mode if mode is None else _checked(mode)
        step, state = self._steps[mode], self._state
        try:
            if not state.optimizer_stepped:
                if self._origin is not None:
                    self._origin.run_due()
                self._model_changed(self._capture.refresh_if_stale())  # never between snapshot and update
            if mode == "train" and not state.grads_taken:
                self._capture.settle_grads(state, mode, step, None, require_present=True)
            self._capture.after_step(state, mode, step)
            item = scalar_item(mode, step, loss, losses, metrics, self.optimizers,
                               self.scaler or self._capture.loss_scale.scaler, self._bad_scalar)
            own = state.overhead + time.perf_counter() - started
            item.values["gradprobe/overhead_ms"] = own * 1e3
            self._own_seconds += own
            self._consumer.put(item, urgent=any(isinstance(v, float) and not math.isfinite(v)
                                                for v in item.values.values()))
        except Exception as error:  # recording must never break training
            self._record_failure("step", error)
        try:
            self.profiler.end_step(step, mode, state.overhead + time.perf_counter() - started)
        except Exception as error:
            self._record_failure("profiler", error)
        self._steps[mode] += 1
        self._state = StepState()
        self._hooks.arm_activations(self._mode, self._steps[self._mode])
        self._watch.mark_step(step, mode)
        reason = self._stop.end_of_step(self._watch.stop_reason, self._steps["train"])
        if reason is not None:
            self.stop(reason)

    def gradients_ready(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """The optimizer is about to step: this step's gradients (measured where their backward
        completed them), the snapshot for updates and the weights are taken now. For frameworks
        without a usable optimizer hook (the optimizer, when given, tells a fused GradScaler's scale)."""
        self._before_optimizer_step(optimizer, (), {})

    def set_step_end_signal(self, signal: Callable[[], bool | None]) -> None:
        """For integrations: `signal()` says, while a backward ends, whether that backward ends the
        optimizer step (True), is a micro-batch of accumulation (False), or is unknown (None)."""
        self._capture.final_backward_signal = signal

    def watch_backward(self, tensor: torch.Tensor) -> None:
        """Marks `tensor` (a loss about to be backpropagated) as leading to this model's gradients:
        the end of its backward is where they are measured. The model's outputs are watched already;
        this is for losses of forwards the probe did not see (it was attached after them)."""
        if not self._closed:
            self._hooks.completion.watch(tensor)

    def log(self, loss: Any = None, losses: Mapping[str, Any] | None = None,
            metrics: Mapping[str, Any] | None = None, *, step: int, mode: str = "train") -> None:
        """Records scalars of a step that already ended (a framework's logs arrive after its step
        end); no step counter moves."""
        mode = _checked(mode)
        if not self._closed:
            try:
                self._consumer.put(scalar_item(mode, step, loss, losses, metrics, [], None, self._bad_scalar))
            except Exception as error:  # recording must never break training
                self._record_failure("log", error)

    @property
    def should_stop(self) -> bool:
        """True once a stop was requested (StopTraining, probe.stop()). In a single process a request
        counts at once; across ranks it counts at the end of the step on which every rank agreed."""
        if not self._should_stop and self._stop.immediate and self._watch.stop_reason is not None:
            self.stop(self._watch.stop_reason)
        return self._should_stop

    @property
    def findings(self) -> list[Finding]:
        """Findings so far (rules run on the consumer thread; call flush() to wait for the latest)."""
        return self._watch.findings

    def observe_predictions(self, labels: Any, predictions: Any, mode: str | None = None) -> None:
        """Labels and predicted classes of a batch, for ClassImbalance and Confusion."""
        if not self._closed and self.engine is not None:
            mode = mode or self._mode
            self._consumer.put(PredictionItem(self._steps[mode], mode, _host_array(labels), _host_array(predictions)))

    def stop(self, reason: str) -> None:
        """Asks the training loop to stop (sets should_stop); integrations stop their trainer."""
        if not self._should_stop:
            self._should_stop, self.stop_reason = True, reason
            self._session.event({"type": "stop_requested", "reason": reason, "steps_completed": self._steps[self._mode],
                                 "mode": self._mode})

    def flush(self) -> None:
        """Waits until everything recorded so far is processed and written as closed parts."""
        self._consumer.drain()
        self._session.writer.flush()

    def close(self, error: BaseException | None = None) -> None:
        """Removes every hook, writes what is pending, and closes the run. Safe to call twice.

        Bounded: it waits at most ProbeConfig.close_timeout_seconds for each of the consumer thread,
        the pending actions and the writer thread; what it could not finish is recorded in
        events.jsonl (`unprocessed`, `action_dropped`, `writer_timeout`) and the run marked truncated.
        """
        self._finish(error)

    def _close_at_end(self, status: str) -> None:
        """The process ends and the probe is still open (lifeline.py): close it, say so, write the report."""
        if self._closed:
            return
        if status == "not-closed":
            warnings.warn(f"gradprobe: the probe recording {self.out_dir} was never closed; it is closed now, at "
                          "exit (status not-closed, every step recorded). Use `with gradprobe.Probe(...) as probe:` "
                          "or call probe.close() at the end of training", RuntimeWarning, stacklevel=2)
        self._finish(None, status)
        if self.rank == 0 and self._steps["train"] + self._steps["eval"] > 0:
            from ..report import write_report_or_warn  # the process is ending: the report is the user's only view

            self.report_path = write_report_or_warn(self.out_dir)
            if self.report_path is not None and self._watch.says_findings:
                logger().info("gradprobe: report: %s", self.report_path)

    def _finish(self, error: BaseException | None, status: str | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._lifeline.release()
        timeout = self.config.close_timeout_seconds
        self._hooks.remove()
        self.profiler.close(timeout)
        if not self._consumer.close(timeout):
            self._session.event({"type": "unprocessed", "items": dict(self._consumer.unprocessed),
                                 "reason": f"close() waited {timeout:g} s for the consumer thread"})
            self._session.writer.truncated = True
        self._watch.close(timeout)
        if self._capture.gradient_capture_notes:
            self._session.note("gradient_capture", self._capture.gradient_capture_notes)
        interrupted = self._lifeline.interrupted or isinstance(error, (KeyboardInterrupt, Terminated))
        status = status or ("interrupted" if interrupted else "failed" if error is not None
                            else "stopped" if self._should_stop else "completed")
        self._session.close(status, self._steps, error if not interrupted else None, self._consumer.dropped, timeout)
        self._session.note("cost", self.cost())
        if self._watch.says_findings:  # the end of the run in a few lines, next to the live ones
            level, lines = self._watch.summary(self.out_dir)
            for line in lines:
                logger().log(level, line)

    def cost(self) -> dict[str, float]:
        """gradprobe's own time so far: on the training thread (hooks and step(), per step) and the CPU of
        its other threads (consumer, store writer, profiler, actions), in all and per training step."""
        steps = max(1, self._steps["train"] - self._session.first_steps.get("train", 0))
        threads = self.cpu.seconds()
        return {"training_thread_seconds": self._own_seconds, "other_threads_cpu_seconds": threads,
                "training_steps": float(steps), "training_thread_ms_per_step": 1e3 * self._own_seconds / steps,
                "other_threads_cpu_ms_per_step": 1e3 * threads / steps}

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(exc)

    # -- torch hooks (training thread): timed as gradprobe's own, never raising into training -----
    def _standing_aside(self, sample: Any = None) -> bool:
        """Closed, replaying a broken step (the NaN/Inf origin), or a torch.compile/export trace."""
        return self._closed or (self._origin is not None and self._origin.replaying) or tracing(sample)

    def forward_begins(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._standing_aside(first_tensor_of(args, kwargs)):
            return
        started = time.perf_counter()
        try:
            if self._timer is not None:
                self._timer.forward_begins()
            if self._origin is not None and self._mode == "train" and torch.is_grad_enabled():
                armed = self._hooks.activations is not None and self._hooks.activations.armed
                self._origin.forward_started(self._steps["train"], args, kwargs, armed)
            if self._inputs_wanted:
                self._capture.model_inputs(args, kwargs, self._mode, self._steps[self._mode])
        except Exception as error:
            self._record_failure("forward hook", error)
        finally:
            self._state.overhead += time.perf_counter() - started

    def forward_ends(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                     output: Any) -> None:
        if self._standing_aside(first_tensor(output)):
            activations = self._hooks.activations
            if activations is not None and activations.armed and not self._closed:
                activations.disarm()  # what they kept is fake: the real forward comes later, armed again
                self._hooks.arm_activations(self._mode, self._steps[self._mode])
            return
        started = time.perf_counter()
        try:
            if self._timer is not None:
                self._timer.forward_ends()
            activations = self._hooks.activations
            if activations is not None and activations.armed:
                activations.forward_ended()
            if output is not None and torch.is_grad_enabled():
                self._hooks.completion.watch_output(output)
                if self._origin is not None and self._mode == "train":
                    self._origin.forward_ended(output)
        except Exception as error:
            self._record_failure("forward hook", error)
        finally:
            self._state.overhead += time.perf_counter() - started

    def optimizer_begins(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.optimizer_begins()
        if self._optimizer_hooks:
            self._before_optimizer_step(optimizer, args, kwargs)

    def optimizer_ends(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._closed and self._timer is not None:
            self._timer.optimizer_ends()

    def backward_ended(self) -> None:
        if self._standing_aside():
            return
        started = time.perf_counter()
        try:
            step = self._steps[self._mode]
            pending = self._capture.on_backward_end(self._state, self._mode, step)
            if self._origin is not None and self._mode == "train":
                self._origin.backward_ended(step, pending)
        except Exception as error:
            self._record_failure("backward end", error)
        finally:
            self._state.overhead += time.perf_counter() - started

    def output_grad(self, index: int, grad: torch.Tensor) -> None:
        if self._origin is not None and not self._origin.replaying and self._mode == "train":
            self._origin.output_grad(index, grad)

    def model_changed(self, module: torch.nn.Module) -> None:
        self._capture.on_registration(module)

    def _before_optimizer_step(self, optimizer: torch.optim.Optimizer | None, args: Any, kwargs: Any) -> None:
        if self._state.optimizer_stepped or self._closed:
            return
        self._state.optimizer_stepped = True
        started = time.perf_counter()
        try:
            if self._origin is not None:
                self._origin.run_due()  # a broken step is replayed before the optimizer changes the weights
            self._model_changed(self._capture.refresh_if_stale())
            self._capture.before_optimizer_step(self._state, self._mode, self._steps[self._mode], optimizer)
        except Exception as error:
            self._record_failure("optimizer step hook", error)
        finally:
            self._state.overhead += time.perf_counter() - started

    def _on_activations(self, labels: list[str], tensors: list[torch.Tensor]) -> None:
        self._capture.activations(labels, tensors, self._mode, self._steps[self._mode])

    def _measure_for_origin(self, kind: str, labels: list[str], tensors: list[torch.Tensor],
                            origin_only: bool) -> PendingStats | None:
        return self._capture.activations(labels, tensors, "train", self._steps["train"], kind=kind,
                                         origin_only=origin_only)

    def _model_changed(self, groups: ParameterGroups | None) -> None:
        if groups is not None:
            self._session.model_changed(groups, self._steps[self._mode])

    def _bad_scalar(self, name: str, reason: str) -> None:
        """Once per name: the scalar is dropped on that step, the step's other scalars are kept."""
        if name not in self._bad_scalars:
            self._bad_scalars.add(name)
            warnings.warn(f"gradprobe: scalar {name!r} is not recorded when {reason} (warned once; the "
                          "step's other scalars are kept)", RuntimeWarning, stacklevel=4)
            self._session.event({"type": "scalar_dropped", "name": name, "reason": reason,
                                 "step": self._steps[self._mode]})

    def _record_failure(self, where: str, error: Exception) -> None:
        warnings.warn(f"gradprobe: {where} failed, training continues: {error!r}", RuntimeWarning, stacklevel=3)
        self._session.event({"type": "error", "where": where, "error": repr(error)})


def _any_nonfinite(pending: PendingStats | None) -> bool | None:
    """Whether a measurement holds NaN/Inf, when known without waiting (CPU); None otherwise."""
    return pending.any_nonfinite() if pending is not None else None


def _checked(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    return mode


def _host_array(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu").numpy()
    return np.asarray(values)
