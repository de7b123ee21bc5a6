"""Where a NaN or Inf first appeared: the module whose forward output, or whose backward, made it.
Healthy steps pay no Python per module call: nothing is hooked below the model's root.

Each training forward keeps references to its inputs (arguments, keyword arguments) and, on a GPU, the
version counters of a few parameters (cheap; the inputs are alive anyway).
When a step turns out broken (its measured gradients hold NaN/Inf, or the scalar its backward started
from is not finite), that step is replayed with a hook on every module:
- forward: the model runs again on the kept inputs and weights, under a forked random stream (the
  training's own stream is left as it was; dropout draws new masks: a NaN that only one mask makes
  may not come back, see below); every module's output is measured in one fused pass and recorded as
  the step's activations, in execution order: the first non-finite one is the origin;
- backward, when that forward was finite: the gradient that reached the model's output in the real
  backward is pushed through the replayed graph (torch.autograd.grad: `.grad` is not touched) with a
  tensor hook on the output and the input of every module without parameters; those gradients are
  recorded (kind "activation_grad"): a module whose output gradient is finite and whose input gradient
  is not produced the NaN/Inf in its own backward. Parameter gradients locate the rest.
Buffers (BatchNorm's running statistics) are restored after the replay, and the probe's own hooks
stand aside during it.

On the CPU the broken step is known at the end of its backward (the gradients are measured there,
synchronously): it is replayed at the optimizer step hook (or probe.step() without one), before the
optimizer changes the weights. On a GPU it is
known when the consumer reads the step's statistics (a step or two later, never a sync): the step is
replayed if its kept inputs are still held and the weights are unchanged since (the optimizer skipped
it: a GradScaler's inf step); otherwise hooks are armed on the next training steps, and the origin is
named at the next step that breaks (reported late, as docs/detection.md says).

Not replayed (hooks armed for the next steps instead): under torch.distributed with several
processes (a replayed forward could enter collectives alone). A forward that is not a function of
its inputs, weights and RNG state (a module with its own counters) may not reproduce: then the
parameter gradients locate it. Forwards under no_grad (evaluation) are not tracked (the loss check
still reports a NaN loss); with gradient accumulation the last micro-batch is the one replayed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from ..records import ScalarRecord, StatsRecord
from .activations import call_label, first_tensor, select_modules
from .grad_completion import output_tensors

# (kind, labels, tensors, origin_only): measure these tensors now as the step's rows of that kind
# (origin_only: keep the rows only if one is non-finite); returns the pending measurement.
Measure = Callable[[str, list[str], list[torch.Tensor], bool], Any]
# Replays are kept for this many training forwards (a GPU learns of a broken step a step or two late).
KEPT_FORWARDS = 3
# Steps of armed hooks after a broken step that could not be replayed.
ARMED_STEPS = 8
# An output gradient is kept for a later replay (GPU) only up to this many elements.
MAX_KEPT_GRAD = 1 << 20
# A scalar output (a loss) is checked for NaN/Inf at the end of its backward when no gradient was
# measured; larger outputs are left to the gradient measurement (a check would be a pass over them).
MAX_CHECKED_OUTPUT = 1024


@dataclass
class KeptForward:
    """What replaying one training forward needs."""

    step: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    cuda_devices: list[int]  # whose random streams a replay forks
    versions: tuple[int, ...]  # of the watched parameters (GPU only): changed means the weights moved
    measured: bool  # activation capture recorded this forward in full
    outputs: list[torch.Tensor] | None = None  # the forward's top-level outputs, until its backward ends
    output_grad: tuple[int, torch.Tensor] | None = None  # (output index, the gradient that reached it)


class Recorder:
    """Hooks on every module for one forward (and its backward): outputs in execution order, and the
    gradients of parameterless modules' outputs and inputs in backward order."""

    def __init__(self, modules: list[tuple[str, torch.nn.Module]], parameterless: set[int]) -> None:
        self._names = {id(m): n for n, m in modules}
        self._parameterless = parameterless
        self._calls: dict[str, int] = {}
        self.labels: list[str] = []
        self.outputs: list[torch.Tensor] = []
        self.grad_labels: list[str] = []
        self.grads: list[torch.Tensor] = []
        self._handles = [m.register_forward_hook(self._on_module) for _, m in modules]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _on_module(self, module: torch.nn.Module, inputs: tuple, output: Any) -> None:
        out = first_tensor(output)
        if out is None or not out.is_floating_point():
            return
        label = call_label(self._calls, self._names[id(module)])
        self.labels.append(label)
        self.outputs.append(out.detach())
        if id(module) in self._parameterless and torch.is_grad_enabled():
            if out.requires_grad:
                out.register_hook(partial(self._keep_grad, label))
            x = first_tensor(inputs)
            if x is not None and x.requires_grad and x.is_floating_point():
                x.register_hook(partial(self._keep_grad, f"{label}:input"))

    def _keep_grad(self, label: str, grad: torch.Tensor) -> None:
        self.grad_labels.append(label)
        self.grads.append(grad.detach())


class NonFiniteOrigin:
    def __init__(self, model: torch.nn.Module, measure: Measure, any_nonfinite: Callable[[Any], bool | None],
                 watched: Sequence[torch.nn.Parameter], replay: bool) -> None:
        self._model = model
        self._measure = measure
        self._any_nonfinite = any_nonfinite  # of a measurement, without waiting (None: not known yet)
        self._watched = list(watched)
        self._replay_allowed = replay
        self._modules = select_modules(model, lambda name: True, False)
        # Modules with no parameters at all (not even in children): their backward is watched.
        self._parameterless = {id(m) for _, m in self._modules if next(m.parameters(), None) is None}
        self._kept: deque[KeptForward] = deque(maxlen=KEPT_FORWARDS)
        self._broken_late: deque[int] = deque()  # steps the consumer found broken (GPU)
        self._lock = threading.Lock()
        self._armed_until = -1  # hooks on every training forward up to this step
        self._live: tuple[int, Recorder] | None = None
        self._located: deque[int] = deque(maxlen=64)  # steps already located (replayed, or recorded live)
        self._due: list[tuple[KeptForward | None, int]] = []  # broken steps to locate at the next run_due()
        self.replaying = False  # the probe's own hooks stand aside while this is True

    # -- the probe's root hooks (training thread) -------------------------------------------------
    def forward_started(self, step: int, args: tuple[Any, ...], kwargs: dict[str, Any], measured: bool) -> None:
        """A training forward begins (grad enabled, not traced). measured: activation capture records
        this forward in full anyway."""
        if step <= self._armed_until and not measured and self._live is None:
            self._live = (step, Recorder(self._modules, self._parameterless))
        # No RNG snapshot: copying the generator's state costs ~50 us on a busy step (a fresh 5 KB
        # tensor every forward); a replay forks the stream instead.
        devices = _cuda_devices(args, kwargs)
        if self._kept and self._kept[-1].step != step:
            self._kept[-1].outputs = None  # a new step: the last one's backward is over
        self._kept.append(KeptForward(step, args, kwargs, devices, self._versions() if devices else (), measured))

    def forward_ended(self, output: Any) -> None:
        if self._kept:
            self._kept[-1].outputs = list(output_tensors(output))
        if self._live is not None:
            step, live = self._live
            if live.outputs:  # kept only if one is non-finite (the consumer decides, no sync)
                self._measure("activation", live.labels, live.outputs, True)
                live.outputs = []

    def output_grad(self, index: int, grad: torch.Tensor) -> None:
        """The gradient that reached the model's output `index` in the real backward (GradientCompletion)."""
        if self._kept and (not grad.is_cuda or grad.numel() <= MAX_KEPT_GRAD):
            self._kept[-1].output_grad = (index, grad.detach())

    def backward_ended(self, step: int, grads_pending: Any) -> None:
        """A training backward ended; grads_pending is the measurement of its gradients (or None)."""
        if self._live is not None:
            live_step, live = self._live
            self._live = None
            live.remove()
            if live.grads:
                self._measure("activation_grad", live.grad_labels, live.grads, True)
            self._located.append(live_step)
            return
        if not self._kept or self._kept[-1].step != step or step in self._located:
            return
        kept = self._kept[-1]
        broken = self._any_nonfinite(grads_pending) if grads_pending is not None else None
        if broken is None:
            broken = _scalar_nonfinite(kept)
        kept.outputs = None  # a replay recomputes them; holding them would keep their graph alive
        if broken:
            self._located.append(step)
            self._due.append((kept, step))

    def run_due(self) -> None:
        """Locates the broken steps known so far (training thread, before the optimizer step)."""
        self._catch_up()
        due, self._due = self._due, []
        for kept, step in due:
            self._locate(kept, step)

    # -- late news (GPU: the consumer thread) -----------------------------------------------------
    def broken_at(self, step: int) -> None:
        """The consumer found a training step's gradients non-finite (any thread)."""
        with self._lock:
            self._broken_late.append(step)

    def _catch_up(self) -> None:
        if not self._broken_late:
            return
        with self._lock:
            steps = list(self._broken_late)
            self._broken_late.clear()
        for step in steps:
            if step not in self._located:
                self._located.append(step)
                self._due.append((next((k for k in self._kept if k.step == step), None), step))

    def remove(self) -> None:
        if self._live is not None:
            self._live[1].remove()
            self._live = None
        self._kept.clear()

    # -- internals ----------------------------------------------------------------------------------
    def _locate(self, kept: KeptForward | None, step: int) -> None:
        if kept is not None and self._replay_allowed and (not kept.cuda_devices or kept.versions == self._versions()):
            self._replay(kept)
        else:  # the weights moved since, or no replay here: watch the next steps as they run
            self._armed_until = max(self._armed_until, step + ARMED_STEPS)

    def _replay(self, kept: KeptForward) -> None:
        model = self._model
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
        recorder = Recorder(self._modules, self._parameterless)
        self.replaying = True
        try:
            with torch.random.fork_rng(devices=kept.cuda_devices), torch.enable_grad():
                output = model(*kept.args, **kept.kwargs)
            forward_broke = None
            if not kept.measured:  # else activation capture recorded this forward already
                forward_broke = self._any_nonfinite(self._measure("activation", recorder.labels, recorder.outputs,
                                                                  False))
            if not forward_broke and kept.output_grad is not None:
                index, grad = kept.output_grad
                outputs = list(output_tensors(output))
                if index < len(outputs) and outputs[index].grad_fn is not None:
                    inputs = [p for p in model.parameters() if p.requires_grad]
                    torch.autograd.grad(outputs[index], inputs, grad_outputs=grad, allow_unused=True)
                    if recorder.grads:
                        self._measure("activation_grad", recorder.grad_labels, recorder.grads, False)
        finally:
            recorder.remove()
            self.replaying = False
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self._watched)


def _scalar_nonfinite(kept: KeptForward) -> bool:
    """Whether the small output a backward started from (a loss) holds NaN/Inf; a larger output is
    judged by the measured gradients only (checking it here would be a pass over it)."""
    if kept.output_grad is None or not kept.outputs or kept.output_grad[0] >= len(kept.outputs):
        return False
    output = kept.outputs[kept.output_grad[0]]
    return output.numel() <= MAX_CHECKED_OUTPUT and not output.is_cuda and not bool(torch.isfinite(output).all())


def _cuda_devices(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[int]:
    """The CUDA devices of the tensors among a call's arguments (their RNG states are kept)."""
    devices: set[int] = set()
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.is_cuda:
            devices.add(value.get_device())
    return sorted(devices)


class LateNews:
    """A consumer observer: a training step whose gradients hold NaN/Inf (known there a step or two
    after a GPU computed them) is news for the origin."""

    def __init__(self, origin: NonFiniteOrigin) -> None:
        self._origin = origin

    def on_stats(self, record: StatsRecord) -> None:
        if record.kind == "grad" and record.mode == "train" and bool((record.stats.nans + record.stats.infs).any()):
            self._origin.broken_at(record.step)

    def on_scalars(self, record: ScalarRecord) -> None:
        pass
