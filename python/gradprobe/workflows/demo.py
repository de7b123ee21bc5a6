"""`gradprobe demo`: fine-tune the pre-trained MiniLM on product reviews and watch every gradient.

Each step computes the full statistics (norms, min/max, mean/std, zeros, NaN/Inf, exponent
histogram) of every gradient in one fused pass and reports what that cost beside the step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class DemoConfig:
    steps: int = 20
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 1e-4
    seed: int = 0
    model: str | None = None  # a Hugging Face model directory; default: the packaged MiniLM


@dataclass
class DemoReport:
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    stats_seconds: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    first_layer_norms: np.ndarray | None = None
    last_layer_norms: np.ndarray | None = None
    nonfinite_steps: list[int] = field(default_factory=list)

    @property
    def stats_overhead(self) -> float:
        return float(np.median(self.stats_seconds) / np.median(self.step_seconds))


def run_demo(config: DemoConfig, log: Callable[[str], None] = print) -> DemoReport:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    from ..stats import StatsComputer
    from .pretrained import resolve_model
    from .reviews import LABELS, make_reviews

    hf_logging.set_verbosity_error()  # the new classifier head's "newly initialized" notice
    path = resolve_model(config.model)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=len(LABELS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    reviews = make_reviews(config.steps * config.batch_size, seed=config.seed)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    computer = StatsComputer()
    report = DemoReport(names=[n for n, _ in params])
    log(f"fine-tuning {path.name} ({sum(p.numel() for _, p in params) / 1e6:.1f}M parameters, "
        f"{len(params)} tensors) on {len(reviews)} product reviews, batch {config.batch_size} x {config.seq_len}")

    model.train()
    for step in range(config.steps):
        batch = reviews[step * config.batch_size:(step + 1) * config.batch_size]
        inputs = tokenizer([r.text for r in batch], padding="max_length", truncation=True,
                           max_length=config.seq_len, return_tensors="pt")
        labels = torch.tensor([r.label for r in batch])
        start = time.perf_counter()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        stats_start = time.perf_counter()
        stats = computer.launch([p.grad for _, p in params], None, histogram=True, backend=None).result()
        stats_seconds = time.perf_counter() - stats_start
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        report.step_seconds.append(time.perf_counter() - start)
        report.stats_seconds.append(stats_seconds)
        report.losses.append(loss.detach().item())
        report.grad_norms.append(float(math.sqrt(float(np.sum(stats.l2**2)))))
        if (stats.nans + stats.infs).any():
            report.nonfinite_steps.append(step)
        if step == 0:
            report.first_layer_norms = stats.l2.copy()
        report.last_layer_norms = stats.l2.copy()
        log(f"step {step:3d}  loss {report.losses[-1]:.4f}  grad norm {report.grad_norms[-1]:.3f}  "
            f"step {report.step_seconds[-1] * 1e3:.0f} ms  statistics {stats_seconds * 1e3:.1f} ms")
    _print_summary(report, log)
    return report


def _print_summary(report: DemoReport, log: Callable[[str], None]) -> None:
    log("")
    log(f"loss {report.losses[0]:.4f} -> {report.losses[-1]:.4f}; non-finite gradients at steps: "
        f"{report.nonfinite_steps or 'none'}")
    log(f"all statistics of {len(report.names)} gradients per step: median "
        f"{np.median(report.stats_seconds) * 1e3:.1f} ms = {report.stats_overhead * 100:.1f}% of the step")
    if report.first_layer_norms is not None and report.last_layer_norms is not None:
        order = np.argsort(-report.last_layer_norms)[:8]
        log("largest gradient norms at the last step (first step beside):")
        for i in order:
            log(f"  {report.names[i]:60s} {report.last_layer_norms[i]:10.4f}  ({report.first_layer_norms[i]:.4f})")
