"""A tiny BERT (hidden 32, 2 layers), a few batches of random tokens, and an independent oracle of
the unclipped gradient norms: per-parameter post-accumulate-grad hooks that keep the float64 norm of
each gradient once backward has finished accumulating it."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification

VOCAB, SEQ = 50, 8


def tiny_bert(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=num_labels)
    return BertForSequenceClassification(config)


def samples(n: int, num_labels: int = 2, seed: int = 1, nan_label_at: int | None = None) -> list[dict]:
    """n examples; num_labels == 1 makes float labels (regression), where one NaN label plants a
    non-finite loss and gradients."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(1, VOCAB, (SEQ,), generator=g)
        if num_labels == 1:
            label = torch.tensor(float("nan") if i == nan_label_at else torch.rand((), generator=g).item())
        else:
            label = torch.randint(0, num_labels, (), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": label})
    return out


class UnclippedNorms:
    """The float64 L2 norm of each parameter's gradient as accumulation left it; `take()` at an
    optimizer step keeps that step's values (clipping happens after the hooks ran)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.latest: dict[str, float] = {}
        self.steps: list[dict[str, float]] = []
        self._handles = [p.register_post_accumulate_grad_hook(self._hook(name))
                         for name, p in model.named_parameters() if p.requires_grad]

    def _hook(self, name: str):
        def keep(param: torch.Tensor) -> None:
            self.latest[name] = float(param.grad.detach().double().norm())
        return keep

    def take(self) -> None:
        self.steps.append(dict(self.latest))
        self.latest.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
