"""The hooks a probe puts into torch: optimizer step-pre hooks, the model's forward hook that watches
its outputs for the end of each backward (grad_completion.py), parameter and module registration
hooks, the model-input hook, the activation forward hooks and the NaN/Inf origin hooks. Each one
calls back into the probe; `remove()` takes every one of them out again. Hooks stored on the user's
model and optimizers are OwnHooks: a saved or copied model carries none of the probe."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..user_hooks import OwnHook
from .activations import ActivationCapture, select_modules
from .config import ProbeConfig
from .grad_completion import GradientCompletion, sentinel_parameters
from .nonfinite_origin import NonFiniteOrigin, OnTensors

OptimizerHook = Callable[[torch.optim.Optimizer, Any, Any], None]


class ProbeHooks:
    def __init__(self, model: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer], config: ProbeConfig, *,
                 before_optimizer_step: OptimizerHook, on_backward_end: Callable[[], None],
                 on_registration: Callable[[torch.nn.Module], None],
                 on_activations: Callable[[list[str], list[torch.Tensor]], None],
                 on_model_inputs: Callable[[torch.nn.Module, Any, Any], None],
                 on_nonfinite_forward: OnTensors) -> None:
        self._activation_collections = [c for c in config.collections if c.kind == "activation"]
        self._handles: list[Any] = [opt.register_step_pre_hook(OwnHook(before_optimizer_step)) for opt in optimizers]
        self.completion = GradientCompletion(on_backward_end)
        self._handles.append(model.register_forward_hook(OwnHook(self._watch_outputs)))
        self._handles += self.completion.watch_parameters(sentinel_parameters(model))

        # A parameter or module registered anywhere in the model (e.g. a resized embedding) rebuilds the plans.
        def registered(module: torch.nn.Module, name: str, value: Any) -> None:
            on_registration(module)

        self._handles.append(torch.nn.modules.module.register_module_parameter_registration_hook(registered))
        self._handles.append(torch.nn.modules.module.register_module_module_registration_hook(registered))
        if config.token_ids and any(c.kind == "input" for c in config.collections):
            self._handles.append(model.register_forward_pre_hook(OwnHook(on_model_inputs), with_kwargs=True))
        self.activations: ActivationCapture | None = None
        if self._activation_collections:
            patterns = config.activation_modules

            def selects(name: str) -> bool:
                if patterns and not any(re.search(p, name) for p in patterns):
                    return False
                return any(c.selects(name) for c in self._activation_collections)

            self.activations = ActivationCapture(model, select_modules(model, selects, bool(patterns)), on_activations)
        self.nonfinite_origin: NonFiniteOrigin | None = None
        if config.nonfinite_origin:
            self.nonfinite_origin = NonFiniteOrigin(
                model, on_nonfinite_forward, lambda: self.activations is not None and self.activations.armed)

    def _watch_outputs(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.completion.watch_output(output)

    def arm_activations(self, mode: str, step: int) -> None:
        """Forward hooks only for a step whose activations are due (they take one forward, then
        disarm themselves)."""
        if self.activations is not None and any(c.due(mode, step) for c in self._activation_collections):
            self.activations.arm()

    def disarm_activations(self) -> None:
        if self.activations is not None:
            self.activations.disarm()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.disarm_activations()
        if self.nonfinite_origin is not None:
            self.nonfinite_origin.remove()
