"""`gradprobe demo`, the README's main job: fine-tune the pre-trained all-MiniLM-L6-v2 on generated product
reviews with gradprobe attached, train the bag-of-n-grams baseline on the same split, and summarise.

Every step records the full statistics of every gradient, weight and update, activations every 10
steps, the loss, and evaluations on the validation split; the default rules watch it all. The run
directory can be read with `gradprobe show`, `gradprobe check` or gradprobe.open_run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .baseline import BaselineResult, train_baseline
from .data import texts_and_labels
from .finetune import FinetuneConfig, FinetuneResult, load_splits, out_dir_of, run_finetune
from .reviews import LABELS
from .rundir import check_run_dir

# For an idle 2-core CPU: under 2 minutes. 100 steps end where the training loss reaches the floor
# the border label noise sets (~0.43); trained on along that floor, the loss stops falling and
# LossNotDecreasing rightly says so (it did at step 131 of a 150-step run).
FULL = FinetuneConfig(generated_reviews=3000, max_steps=100, batch_size=16, max_length=64, lr=1e-4,
                      eval_every=50, save_best=False)
QUICK = replace(FULL, generated_reviews=600, max_steps=12, eval_every=6)


@dataclass
class DemoResult:
    finetune: FinetuneResult
    baseline: BaselineResult
    report: Path | None


def demo_config(quick: bool = False, **overrides: Any) -> FinetuneConfig:
    base = QUICK if quick else FULL
    out_dir = overrides.pop("out_dir", None) or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    return replace(base, out_dir=str(out_dir), **{k: v for k, v in overrides.items() if v is not None})


def run_demo(config: FinetuneConfig, log: Callable[[str], None] = print, show_progress: bool = False) -> DemoResult:
    check_run_dir(out_dir_of(config), config.exist)  # before the reviews are generated
    splits = load_splits(config)
    result = run_finetune(config, log=log, show_progress=show_progress, splits=splits)  # writes the report
    train_texts, train_labels = texts_and_labels(splits.train)
    test_texts, test_labels = texts_and_labels(splits.test)
    baseline = train_baseline(train_texts, train_labels, test_texts, test_labels, len(LABELS))
    demo = DemoResult(result, baseline, result.report)
    for line in summary(demo):
        log(line)
    return demo


def summary(demo: DemoResult) -> list[str]:
    result, baseline = demo.finetune, demo.baseline
    lines = ["", f"{'model':40s} {'test accuracy':>13s} {'macro F1':>9s} {'train time':>11s}"]
    if result.test is not None:
        test = result.test.metrics
        lines.append(f"{result.model_name:40s} {test.accuracy:13.3f} {test.macro_f1:9.3f} {result.seconds:10.0f}s")
    lines.append(f"{'bag-of-n-grams baseline (fastText-style)':40s} {baseline.metrics.accuracy:13.3f} "
                 f"{baseline.metrics.macro_f1:9.3f} {baseline.seconds:10.1f}s")
    if result.test is not None:
        lines.append("confusion on the test split (rows: true, columns: predicted; " + ", ".join(LABELS) + "): "
                     + " | ".join(" ".join(f"{n:3d}" for n in row) for row in result.test.metrics.confusion))
    if result.injected is not None:
        fired = any(f.code == result.injected.rule for f in result.findings)
        lines.append(f"injected fault '{result.injected.name}' ({result.injected.description}): expected rule "
                     f"{result.injected.rule} {'fired' if fired else 'DID NOT fire'}")
    if result.findings:
        lines.append(f"{len(result.findings)} findings:")
        lines += [f"  step {f.step} ({f.mode}) [{f.code} {f.rule}] {f.message}" for f in result.findings]
    else:
        lines.append("findings: none (no rule fired: a healthy run)")
    if result.stop_reason:
        lines.append(f"stopped early: {result.stop_reason}")
    lines.append(f"gradprobe's cost: median {result.own_ms:.1f} ms per step on the training thread = "
                 f"{100 * result.own_ms / result.step_ms:.1f}% of a {result.step_ms:.0f} ms training step, and "
                 f"{result.threads_ms:.1f} ms of CPU per step on its other threads (consumer, store, profiler)")
    lines.append(f"run directory: {result.run_dir}  (gradprobe show {result.run_dir})")
    if demo.report is not None:
        lines.append(f"report: {demo.report}")
    return lines
