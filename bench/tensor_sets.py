"""Tensor sets the benchmarks measure: real gradients of BERT-shaped models (random init, no download)."""

from __future__ import annotations

import torch


def bert_config(name: str):
    from transformers import BertConfig

    if name == "bert_base":
        return BertConfig()  # 12 layers, hidden 768: ~110M parameters
    if name == "minilm":  # all-MiniLM-L6-v2's shape: 6 layers, hidden 384
        return BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    raise ValueError(name)


def pretraining_gradients(name: str, device: str = "cpu", batch: int = 2, seq: int = 64) -> list[torch.Tensor]:
    """Gradients of one MLM + NSP step: realistic magnitudes, sparse word-embedding rows included."""
    from transformers import BertForPreTraining

    torch.manual_seed(0)
    config = bert_config(name)
    model = BertForPreTraining(config).to(device)
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=device)
    out = model(input_ids=ids, labels=ids, next_sentence_label=torch.zeros(batch, dtype=torch.long, device=device))
    out.loss.backward()
    return [p.grad.detach() for p in model.parameters() if p.grad is not None]


def llama7b_shaped(device: str, dtype=torch.bfloat16) -> list[torch.Tensor]:
    """A 7B-parameter-shaped set (LLaMA-7B: 32 layers, hidden 4096, MLP 11008, vocab 32000)."""
    g = torch.Generator(device=device).manual_seed(0)
    shapes = [(32000, 4096)]
    for _ in range(32):
        shapes += [(4096, 4096)] * 4 + [(11008, 4096), (11008, 4096), (4096, 11008), (4096,), (4096,)]
    shapes += [(4096,), (32000, 4096)]
    return [torch.randn(s, generator=g, device=device, dtype=dtype) * 1e-3 for s in shapes]


def nbytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
