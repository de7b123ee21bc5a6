"""The hooks a probe puts into torch: optimizer step-pre hooks, the clip_grad_norm_ hook, parameter
and module registration hooks, the model-input hook, the activation forward hooks and the NaN/Inf
origin hooks. Each one
calls back into the probe; `remove()` takes every one of them out again."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import clip_hook
from .activations import ActivationCapture, select_modules
from .config import ProbeConfig
from .nonfinite_origin import NonFiniteOrigin, OnTensors

OptimizerHook = Callable[[torch.optim.Optimizer, Any, Any], None]


class ProbeHooks:
    def __init__(self, model: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer], config: ProbeConfig, *,
                 before_optimizer_step: OptimizerHook, before_clipping: Callable[[Any], None],
                 on_registration: Callable[[torch.nn.Module], None],
                 on_activations: Callable[[list[str], list[torch.Tensor]], None],
                 on_model_inputs: Callable[[torch.nn.Module, Any, Any], None],
                 on_nonfinite_forward: OnTensors) -> None:
        self._activation_collections = [c for c in config.collections if c.kind == "activation"]
        self._handles: list[Any] = [opt.register_step_pre_hook(before_optimizer_step) for opt in optimizers]
        self._handles.append(clip_hook.register(before_clipping))

        # A parameter or module registered anywhere in the model (e.g. a resized embedding) rebuilds the plans.
        def registered(module: torch.nn.Module, name: str, value: Any) -> None:
            on_registration(module)

        self._handles.append(torch.nn.modules.module.register_module_parameter_registration_hook(registered))
        self._handles.append(torch.nn.modules.module.register_module_module_registration_hook(registered))
        if config.token_ids and any(c.kind == "input" for c in config.collections):
            self._handles.append(model.register_forward_pre_hook(on_model_inputs, with_kwargs=True))
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
