"""Where a NaN or Inf first appeared, on every training step, at almost no cost.

Forward: while gradients are enabled, each module's output is kept (a reference; a training
forward saves most of them for backward anyway) until the root module's forward returns. On the
CPU only the root output (the loss or the logits: one small tensor) is then checked; when it holds
NaN/Inf, every kept output is measured in one fused call and recorded as activations, and the
first non-finite one in execution order is the origin. On a GPU, where that check would need a
host-device sync, the fused call runs on every step and the consumer keeps its rows only when one
of them is non-finite.

Backward: modules without parameters (activation functions, custom functions) cannot be located
by parameter gradients, so for them the gradients of their output and of their input are kept
until the next forward (on a GPU, until the step's gradients are launched). A module whose output
gradient is finite while its input gradient is not produced the NaN/Inf in its own backward. They
are measured only when the step's parameter gradients hold NaN/Inf (CPU), or on every step and kept
only when non-finite (GPU). Parameter gradients locate the rest (the first non-finite one in
backward order).

Limits: forwards under no_grad (evaluation) are not tracked (the loss check still reports a NaN
loss); with gradient accumulation the backward of the last micro-batch is the one located.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from ..user_hooks import OwnHook
from .activations import call_label, first_tensor, select_modules
from .tracing import tracing

# (labels, tensors, origin_only): origin_only means "keep the rows only if one is non-finite".
OnTensors = Callable[[list[str], list[torch.Tensor], bool], None]


class NonFiniteOrigin:
    def __init__(self, model: torch.nn.Module, on_forward: OnTensors,
                 activation_capture_armed: Callable[[], bool]) -> None:
        self._model = model
        self._on_forward = on_forward
        self._capture_armed = activation_capture_armed  # that forward is measured in full anyway
        modules = select_modules(model, lambda name: True, False)
        self._names = {id(m): n for n, m in modules}
        # Modules with no parameters at all (not even in children): their backward is watched.
        self._parameterless = {id(m) for _, m in modules if next(m.parameters(), None) is None}
        self._calls: dict[str, int] = {}
        self._labels: list[str] = []
        self._outputs: list[torch.Tensor] = []
        self._grad_labels: list[str] = []
        self._grads: list[torch.Tensor] = []
        self._tracking = False
        self._handles = [m.register_forward_hook(OwnHook(self._on_module)) for _, m in modules]
        self._handles.append(model.register_forward_pre_hook(OwnHook(self._on_root_start)))
        self._handles.append(model.register_forward_hook(OwnHook(self._on_root_end), always_call=True))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._clear_forward()
        self.release_backward()

    def kept_backward(self) -> tuple[list[str], list[torch.Tensor]]:
        """The kept gradients of the last backward (firing order); they stay kept until release."""
        return self._grad_labels, self._grads

    def release_backward(self) -> None:
        """Forgets the kept gradients. On the CPU this waits for the next forward, outside the step's
        hooks: freeing large tensors costs time that the backward would otherwise have spent."""
        self._grad_labels, self._grads = [], []

    # -- hooks ----------------------------------------------------------------------------------
    def _on_root_start(self, module: torch.nn.Module, args: Any) -> None:
        self._clear_forward()
        self.release_backward()  # a new forward: the previous backward is over (or not the last micro-batch)
        self._tracking = torch.is_grad_enabled() and not self._capture_armed() and not tracing()

    def _on_module(self, module: torch.nn.Module, inputs: tuple, output: Any) -> None:
        if not self._tracking:
            return
        label = call_label(self._calls, self._names[id(module)])
        out = first_tensor(output)
        if out is None or not out.is_floating_point():
            return
        self._labels.append(label)
        self._outputs.append(out.detach())
        if id(module) in self._parameterless:
            if out.requires_grad:
                out.register_hook(partial(self._keep_grad, label))
            x = first_tensor(inputs)
            if x is not None and x.requires_grad and x.is_floating_point():
                x.register_hook(partial(self._keep_grad, f"{label}:input"))

    def _keep_grad(self, label: str, grad: torch.Tensor) -> None:
        self._grad_labels.append(label)
        self._grads.append(grad.detach())

    def _on_root_end(self, module: torch.nn.Module, inputs: tuple, output: Any) -> None:
        labels, outputs, tracking = self._labels, self._outputs, self._tracking
        self._clear_forward()
        if not tracking or not outputs:
            return
        root = first_tensor(output)
        if root is None or not root.is_floating_point():
            return
        if root.is_cuda:
            self._on_forward(labels, outputs, True)  # one launch, no sync; kept only if non-finite
        elif not bool(torch.isfinite(root).all()):
            self._on_forward(labels, outputs, False)

    def _clear_forward(self) -> None:
        self._labels, self._outputs, self._calls = [], [], {}
        self._tracking = False
