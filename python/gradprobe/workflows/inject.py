"""Fault injection: alter a BERT training run so that one named gradprobe rule fires.

For learning what each rule catches, and for the tests that prove it does. Each injection changes
the run the way the fault happens in practice (a bias pushed negative, a parameter left out of the
optimizer, a loss scale never undone); faults.py names the rule expected to fire. Other rules may
fire as well (an all-zero gradient below dead units, for instance): faults have several symptoms.
The run-level changes (learning rate, data, evaluation cadence) are finetune.py's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .faults import Injection


def alter_model(fault: Injection, model: Any) -> list[Any]:
    """Changes the model before the probe attaches; returns hook handles to keep alive."""
    layers = _encoder_layers(model)
    if fault.name == "bad-init":
        with torch.no_grad():  # identical non-zero weights: the units never differentiate
            layers[0].intermediate.dense.weight.fill_(0.05)
    elif fault.name == "dead-relu":
        block = layers[len(layers) // 2].intermediate
        block.intermediate_act_fn = torch.nn.ReLU()
        with torch.no_grad():  # a bias pushed far negative: every unit's input is below zero
            block.dense.bias.fill_(-1e3)
    elif fault.name == "vanishing":
        below = layers[len(layers) // 2 - 1] if len(layers) > 1 else model.base_model.embeddings
        return [below.register_forward_hook(_scale_output_gradient(1e-10))]
    elif fault.name == "nan":
        return [model.base_model.embeddings.register_forward_hook(_nan_from(fault.start_step))]
    return []


def optimizer_parameters(fault: Injection, model: Any) -> Iterable[torch.nn.Parameter]:
    """The parameters the optimizer is given: all of them, or (frozen) only the classifier head."""
    if fault.name == "frozen":  # requires_grad stays on: the weights get gradients but never move
        encoder = {id(p) for p in model.base_model.parameters()}
        return [p for p in model.parameters() if id(p) not in encoder]
    return model.parameters()


def scale_loss(fault: Injection, loss: torch.Tensor, step: int) -> torch.Tensor:
    if fault.name == "exploding" and step >= fault.start_step:
        return loss * 1e6  # a loss scale that is never undone before the optimizer step
    return loss


def _nan_from(start_step: int) -> Any:
    calls = {"count": 0}

    def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        calls["count"] += 1
        if module.training and calls["count"] > start_step:
            output = output.clone()
            output[0, 0, 0] = float("nan")  # one bad value from a corrupt batch
        return output
    return hook


def _encoder_layers(model: Any) -> Any:
    encoder = getattr(model.base_model, "encoder", None)
    if encoder is None or not hasattr(encoder, "layer"):
        raise ValueError(f"fault injection needs a BERT-like encoder (model.base_model.encoder.layer); "
                         f"{type(model).__name__} has none")
    return encoder.layer


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def _scale_output_gradient(factor: float) -> Any:
    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (_ScaleGradient.apply(output[0], factor), *output[1:])
        return _ScaleGradient.apply(output, factor)
    return hook
