"""Fault injection: alter a BERT training run so that one named gradprobe rule fires.

For learning what each rule catches, and for the tests that prove it does. Each injection changes
the run the way the fault happens in practice (a bias pushed negative, a parameter left out of the
optimizer, a loss scale never undone) and names the rule expected to fire. The run's other rules may
fire as well (an all-zero gradient below dead units, for instance): faults have several symptoms.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Injection:
    name: str
    rule: str  # the code of the rule expected to fire
    description: str
    start_step: int = 3  # for faults that appear during training

    def min_steps(self) -> int:
        """Steps the run needs for the rule to have the evidence it waits for."""
        return {"lr-zero": 60, "overfit": 80, "frozen": 6}.get(self.name, self.start_step + 4)

    def alter_model(self, model: Any) -> list[Any]:
        """Changes the model before the probe attaches; returns hook handles to keep alive."""
        layers = _encoder_layers(model)
        if self.name == "bad-init":
            with torch.no_grad():  # identical non-zero weights: the units never differentiate
                layers[0].intermediate.dense.weight.fill_(0.05)
        elif self.name == "dead-relu":
            block = layers[len(layers) // 2].intermediate
            block.intermediate_act_fn = torch.nn.ReLU()
            with torch.no_grad():  # a bias pushed far negative: every unit's input is below zero
                block.dense.bias.fill_(-1e3)
        elif self.name == "vanishing":
            below = layers[len(layers) // 2 - 1] if len(layers) > 1 else model.base_model.embeddings
            return [below.register_forward_hook(_scale_output_gradient(1e-10))]
        elif self.name == "nan":
            return [model.base_model.embeddings.register_forward_hook(self._nan_from_start())]
        return []

    def optimizer_parameters(self, model: Any) -> Iterable[torch.nn.Parameter]:
        """The parameters the optimizer is given: all of them, or (frozen) only the classifier head."""
        if self.name == "frozen":  # requires_grad stays on: the weights get gradients but never move
            head = {id(p) for p in model.base_model.parameters()}
            return [p for p in model.parameters() if id(p) not in head]
        return model.parameters()

    def scale_loss(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        if self.name == "exploding" and step >= self.start_step:
            return loss * 1e6  # a loss scale that is never undone before the optimizer step
        return loss

    def _nan_from_start(self) -> Any:
        calls = {"count": 0}

        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            calls["count"] += 1
            if module.training and calls["count"] > self.start_step:
                output = output.clone()
                output[0, 0, 0] = float("nan")  # one bad value from a corrupt batch
            return output
        return hook


INJECTIONS: dict[str, Injection] = {i.name: i for i in (
    Injection("vanishing", "GP101", "gradients into the lower half of the encoder are scaled by 1e-10 "
              "(a saturated bottleneck)"),
    Injection("exploding", "GP102", "the loss is multiplied by 1e6 before backward from step 3 on "
              "(a loss scale never undone)"),
    Injection("nan", "GP100", "one NaN enters the embeddings' output from step 3 on (a corrupt batch)"),
    Injection("bad-init", "GP140", "the first feed-forward matrix is initialised to one constant"),
    Injection("dead-relu", "GP130", "a middle feed-forward layer uses ReLU with its bias at -1000"),
    Injection("overfit", "GP122", "trains many epochs on 32 reviews, no dropout or weight decay, "
              "evaluating every 4 steps"),
    Injection("frozen", "GP112", "only the classifier head is given to the optimizer"),
    Injection("lr-zero", "GP120", "the learning rate is 0"),
)}


def injection(name: str | None) -> Injection | None:
    if name is None:
        return None
    if name not in INJECTIONS:
        raise ValueError(f"unknown injection {name!r}; one of {', '.join(INJECTIONS)}")
    return INJECTIONS[name]


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
