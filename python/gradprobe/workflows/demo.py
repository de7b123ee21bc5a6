"""`gradprobe demo`: fine-tune the pre-trained MiniLM on product reviews with a Probe attached.

Every step records the full statistics (norms, min/max, mean/std, zeros, NaN/Inf, exponent
histograms) of every gradient, weight and update, activations every 10 steps, the loss, and an
evaluation on held-out reviews; the default rules watch it all. The run directory can be read
with `gradprobe show`, `gradprobe check` or gradprobe.open_run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..actions import Log
from ..probe import Probe
from ..store import open_run
from .pretrained import resolve_model
from .reviews import LABELS, make_reviews


@dataclass(frozen=True)
class DemoConfig:
    steps: int = 30
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 5e-5
    eval_every: int = 10
    eval_size: int = 96
    seed: int = 0
    model: str | None = None  # a Hugging Face model directory; default: the packaged MiniLM
    out_dir: str | None = None  # default: runs/demo-<time>
    preset: str = "default"


@dataclass
class DemoReport:
    run_dir: Path
    losses: list[float] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    findings: list = field(default_factory=list)
    own_ms: float = float("nan")

    @property
    def overhead(self) -> float:
        return self.own_ms / 1e3 / float(np.median(self.step_seconds))


def run_demo(config: DemoConfig, log: Callable[[str], None] = print) -> DemoReport:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the new classifier head's "newly initialized" notice
    path = resolve_model(config.model)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=len(LABELS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    reviews = make_reviews(config.steps * config.batch_size + config.eval_size, seed=config.seed)
    train, held_out = reviews[:-config.eval_size], reviews[-config.eval_size:]

    def encode(batch):
        inputs = tokenizer([r.text for r in batch], padding="max_length", truncation=True,
                           max_length=config.seq_len, return_tensors="pt")
        return inputs, torch.tensor([r.label for r in batch])

    out_dir = Path(config.out_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    report = DemoReport(run_dir=out_dir)
    log(f"fine-tuning {path.name} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) on "
        f"{len(train)} product reviews ({', '.join(LABELS)}), batch {config.batch_size} x {config.seq_len}; "
        f"recording to {out_dir}")
    with Probe(model, optimizer, out_dir=out_dir, config=config.preset, actions=[Log()], exist="overwrite") as probe:
        for step in range(config.steps):
            model.train()
            inputs, labels = encode(train[step * config.batch_size:(step + 1) * config.batch_size])
            start = time.perf_counter()
            loss = model(**inputs, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            probe.step(loss=loss)
            report.step_seconds.append(time.perf_counter() - start)
            report.losses.append(loss.detach().item())
            log(f"step {step:3d}  loss {report.losses[-1]:.4f}  {report.step_seconds[-1] * 1e3:.0f} ms")
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                _evaluate(model, encode, held_out, config.batch_size, probe, report, log)
            if probe.should_stop:
                log(f"stopping: {probe.stop_reason}")
                break
        probe.flush()
        report.findings = probe.findings
    own = open_run(out_dir).scalars(["gradprobe/overhead_ms"], mode="train").value.to_numpy()
    report.own_ms = float(np.median(own[1:])) if len(own) > 1 else float("nan")
    _print_summary(report, log)
    return report


def _evaluate(model, encode, held_out, batch_size, probe, report, log) -> None:
    import torch

    model.eval()
    probe.set_mode("eval")
    losses, correct = [], 0
    with torch.no_grad():
        for i in range(0, len(held_out), batch_size):
            inputs, labels = encode(held_out[i:i + batch_size])
            out = model(**inputs, labels=labels)
            predictions = out.logits.argmax(-1)
            correct += int((predictions == labels).sum())
            losses.append(out.loss.item())
            probe.observe_predictions(labels, predictions)
    report.eval_losses.append(float(np.mean(losses)))
    report.eval_accuracy.append(correct / len(held_out))
    probe.step(loss=report.eval_losses[-1], metrics={"accuracy": report.eval_accuracy[-1]})
    probe.set_mode("train")
    log(f"      eval loss {report.eval_losses[-1]:.4f}  accuracy {100 * report.eval_accuracy[-1]:.1f}%")


def _print_summary(report: DemoReport, log: Callable[[str], None]) -> None:
    log("")
    log(f"train loss {report.losses[0]:.4f} -> {report.losses[-1]:.4f}; eval accuracy "
        f"{' -> '.join(f'{100 * a:.0f}%' for a in report.eval_accuracy)}")
    log(f"gradprobe's own time per step: median {report.own_ms:.1f} ms = {100 * report.overhead:.1f}% of the step")
    if report.findings:
        log(f"{len(report.findings)} findings:")
        for f in report.findings:
            log(f"  step {f.step} ({f.mode}) [{f.code} {f.rule}] {f.message}")
    else:
        log("no rule fired: a healthy run")
    log(f"run directory: {report.run_dir}  (gradprobe show {report.run_dir})")
