"""Activation capture: module outputs from forward hooks, batched into one fused call per forward.

Hooks are attached only for a forward whose step is due and removed after it, so steps that
record no activations pay nothing. Outputs are held until the root module's forward returns
(they are mostly saved for backward anyway), then measured in one call. A module that runs twice
in one forward gets `name#1`, `name#2` ... for its later calls. For activation functions the input
is recorded too (`name:input`), since saturation is a property of the pre-activation.

Caveat: an in-place operation that changes an output after its hook (e.g. ReLU(inplace=True) on a
Linear's output) is seen after the change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .tracing import tracing

# Modules whose output duplicates another's or carries no signal.
_SKIPPED_TYPES = ("Dropout", "Identity")
# Activation functions whose input shows saturation (tanh, sigmoid, softmax) or death (ReLU family).
ACTIVATION_TYPES = ("ReLU", "GELU", "GELUActivation", "Tanh", "Sigmoid", "Softmax", "SiLU", "LeakyReLU", "ELU",
                    "Hardtanh", "ReLU6", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation", "Mish")


def first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            if isinstance(v, torch.Tensor):
                return v
    if hasattr(value, "to_tuple"):  # transformers ModelOutput
        return first_tensor(value.to_tuple())
    return None


def call_label(calls_seen: dict[str, int], name: str) -> str:
    """`name` for a module's first call in a forward, `name#1`, `name#2` ... for its later ones."""
    calls = calls_seen.get(name, 0)
    calls_seen[name] = calls + 1
    return name if calls == 0 else f"{name}#{calls}"


def select_modules(model: torch.nn.Module, selects: Callable[[str], bool],
                   patterns_given: bool) -> list[tuple[str, torch.nn.Module]]:
    """Every module below the root (containers too), minus dropout and identity.

    Containers matter: math done in a module's own forward (attention scores, a custom block)
    shows only in that module's output. Hooks fire when a module finishes, so children come
    before their parent and the first non-finite output in the record is where it arose."""
    return [(name, module) for name, module in model.named_modules()
            if module is not model and type(module).__name__ not in _SKIPPED_TYPES and selects(name)]


class ActivationCapture:
    """Module outputs for one forward of a due step, through one global forward hook that is there only
    during that forward (one registration, not one per module: registering ~200 hooks and removing them
    cost ~1.5 ms a due step) and keeps only (module, inputs, output) of the selected modules; labels and
    tensors are worked out once, when the model's forward ends (the probe's root hook calls
    `forward_ended`)."""

    def __init__(self, modules: list[tuple[str, torch.nn.Module]],
                 on_forward: Callable[[list[str], list[torch.Tensor]], None]) -> None:
        self._modules = modules
        self._names = {id(m): n for n, m in modules}
        self._is_activation = {id(m): type(m).__name__ in ACTIVATION_TYPES for _, m in modules}
        self._on_forward = on_forward
        self._handle: Any = None
        self._seen: list[tuple[torch.nn.Module, Any, Any]] = []
        # The labels of the last forward's modules, by their call sequence (reused while it repeats).
        self._labels_for: tuple[tuple[int, ...], list[str]] = ((), [])

    @property
    def armed(self) -> bool:
        return self._handle is not None

    def arm(self) -> None:
        if self._handle is None and self._modules:
            self._handle = torch.nn.modules.module.register_module_forward_hook(self._keep)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._seen = []

    def _keep(self, module: torch.nn.Module, inputs: tuple, output: Any) -> None:
        if id(module) in self._names:
            self._seen.append((module, inputs, output))

    def forward_ended(self) -> None:
        """The model's forward returned: one fused measurement of what the hook kept; then the hook
        goes (one forward per due step)."""
        seen = self._seen
        self.disarm()
        if tracing() or not seen:
            return  # an export or compile trace: its tensors are fake
        order = tuple(id(module) for module, _, _ in seen)
        if order != self._labels_for[0]:
            calls: dict[str, int] = {}
            self._labels_for = (order, [call_label(calls, self._names[i]) for i in order])
        labels: list[str] = []
        tensors: list[torch.Tensor] = []
        for label, (module, inputs, output) in zip(self._labels_for[1], seen):
            out = first_tensor(output)
            if out is not None and out.is_floating_point():
                labels.append(label)
                tensors.append(out)  # read natively, never by autograd: no detach() (one op per module)
            if self._is_activation[id(module)]:
                x = first_tensor(inputs)
                if x is not None and x.is_floating_point():
                    labels.append(f"{label}:input")
                    tensors.append(x)
        if tensors:
            self._on_forward(labels, tensors)
