"""`gradprobe pretrain`: a BERT built from a config (small by default), trained from scratch with masked
language modelling and next-sentence prediction, with a Probe attached.

Both losses are recorded by name (loss/mlm, loss/nsp beside their sum, loss); MLM accuracy (over
the selected tokens) and NSP accuracy are evaluated on held-out documents every `eval_every` steps.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..actions import Log, StopTraining
from ..probe import Probe
from ..report import write_report_or_warn
from ..rules import Finding
from .corpus import SentencePair, mask_tokens, review_documents, sentence_pairs, text_documents
from .pretrained import resolve_model
from .progress import TrainingProgress
from .rundir import check_run_dir


@dataclass(frozen=True)
class PretrainConfig:
    corpus: str | None = None  # a text file or directory of *.txt; None: generated reviews by product
    generated_reviews: int = 4000
    tokenizer: str | None = None  # a directory with a tokenizer; None: the packaged MiniLM's (BERT uncased)
    bert_config: str | None = None  # a config.json; None: the small BERT below
    hidden_size: int = 128
    layers: int = 2
    heads: int = 2
    intermediate_size: int = 512
    max_length: int = 64
    batch_size: int = 16
    steps: int = 300
    lr: float = 5e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    mlm_probability: float = 0.15
    held_out_fraction: float = 0.1
    eval_every: int = 50
    eval_pairs: int = 256
    seed: int = 0
    out_dir: str | None = None  # default: runs/pretrain-<time>
    exist: str = "error"
    preset: str = "default"

    def __post_init__(self) -> None:
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {self.held_out_fraction}")
        for name in ("batch_size", "max_length", "steps", "eval_every", "eval_pairs", "layers", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> PretrainConfig:
        """Settings from a YAML or JSON mapping; `overrides` (e.g. command-line flags) win."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown keys {', '.join(unknown)}")
        return cls(**{**data, **overrides})


@dataclass
class PretrainEvaluation:
    step: int
    mlm_loss: float
    nsp_loss: float
    mlm_accuracy: float
    nsp_accuracy: float


@dataclass
class PretrainResult:
    run_dir: Path
    parameters: int
    mlm_losses: list[float] = field(default_factory=list)
    nsp_losses: list[float] = field(default_factory=list)
    evaluations: list[PretrainEvaluation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    stop_reason: str | None = None
    seconds: float = 0.0
    report: Path | None = None  # RUN/report.html; None when it could not be written (a warning says why)


def run_pretrain(config: PretrainConfig, log: Callable[[str], None] = print,
                 show_progress: bool = False) -> PretrainResult:
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    out_dir = Path(config.out_dir or f"runs/pretrain-{time.strftime('%Y%m%d-%H%M%S')}")
    check_run_dir(out_dir, config.exist)  # before the corpus and the model are loaded
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    documents = (text_documents(config.corpus) if config.corpus
                 else review_documents(config.generated_reviews, config.seed))
    rng.shuffle(documents)
    n_held_out = max(2, round(len(documents) * config.held_out_fraction))
    held_out, training = documents[:n_held_out], documents[n_held_out:]
    if len(training) < 2:
        raise ValueError(f"{len(documents)} documents are too few to hold {n_held_out} out and train on the rest")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.tokenizer))
    if config.bert_config:
        bert_config = BertConfig.from_json_file(config.bert_config)
    else:
        bert_config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=config.hidden_size,
                                 num_hidden_layers=config.layers, num_attention_heads=config.heads,
                                 intermediate_size=config.intermediate_size,
                                 max_position_embeddings=max(128, config.max_length))
    model = BertForPreTraining(bert_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = round(config.warmup_ratio * config.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        (s + 1) / (warmup + 1), max(1.0 / config.steps, (config.steps - s) / max(1, config.steps - warmup))))
    generator = torch.Generator().manual_seed(config.seed)
    encode = _batch_encoder(tokenizer, config, bert_config.vocab_size)
    eval_batches = [encode(sentence_pairs(held_out, config.batch_size, random.Random(config.seed + 1 + i)),
                           torch.Generator().manual_seed(config.seed + 1 + i))
                    for i in range(max(1, config.eval_pairs // config.batch_size))]
    result = PretrainResult(out_dir, sum(p.numel() for p in model.parameters()))
    log(f"pretraining a BERT ({bert_config.num_hidden_layers} layers, hidden {bert_config.hidden_size}, "
        f"{result.parameters / 1e6:.1f}M parameters) with MLM + NSP on {len(training)} documents "
        f"({len(held_out)} held out), {config.steps} steps of {config.batch_size} x {config.max_length} tokens; "
        f"recording to {out_dir}")
    started = time.perf_counter()
    with Probe(model, optimizer, out_dir=out_dir, config=config.preset, exist=config.exist,
               actions=[Log(), StopTraining(min_severity="critical")]) as probe, \
            TrainingProgress(config.steps, "pretraining", log, show_progress) as progress:
        for step in range(config.steps):
            model.train()
            inputs, mlm_labels, nsp_labels = encode(sentence_pairs(training, config.batch_size, rng), generator)
            mlm_loss, nsp_loss, _, _ = _losses(model, inputs, mlm_labels, nsp_labels)
            total = mlm_loss + nsp_loss
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            probe.step(loss=total, losses={"mlm": mlm_loss, "nsp": nsp_loss})
            result.mlm_losses.append(float(mlm_loss.detach()))
            result.nsp_losses.append(float(nsp_loss.detach()))
            progress.advance(result.mlm_losses[-1] + result.nsp_losses[-1], config.batch_size)
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                evaluation = _evaluate(model, eval_batches, probe, step)
                result.evaluations.append(evaluation)
                progress.note(f"step {step + 1:4d}  held-out MLM loss {evaluation.mlm_loss:.3f} accuracy "
                              f"{evaluation.mlm_accuracy:.3f}  NSP loss {evaluation.nsp_loss:.3f} accuracy "
                              f"{evaluation.nsp_accuracy:.3f}")
            if probe.should_stop:
                result.stop_reason = probe.stop_reason
                progress.note(f"stopping: {probe.stop_reason}")
                break
        probe.flush()
        result.findings = list(probe.findings)
    result.seconds = time.perf_counter() - started
    (out_dir / "pretrain.json").write_text(json.dumps(
        {"config": asdict(config), "parameters": result.parameters, "seconds": result.seconds,
         "evaluations": [asdict(e) for e in result.evaluations], "stop_reason": result.stop_reason}, indent=2) + "\n")
    result.report = write_report_or_warn(out_dir)
    return result


Batch = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]


def _batch_encoder(tokenizer: Any, config: PretrainConfig,
                   vocab_size: int) -> Callable[[Sequence[SentencePair], torch.Generator], Batch]:
    def encode(pairs: Sequence[SentencePair], generator: torch.Generator) -> Batch:
        inputs = tokenizer([p.first for p in pairs], [p.second for p in pairs], padding=True,
                           truncation="longest_first", max_length=config.max_length, return_tensors="pt",
                           return_special_tokens_mask=True)
        special = inputs.pop("special_tokens_mask").bool() | (inputs["attention_mask"] == 0)
        masked, labels = mask_tokens(inputs["input_ids"], special, tokenizer.mask_token_id, vocab_size, generator,
                                     config.mlm_probability)
        inputs["input_ids"] = masked
        return dict(inputs), labels, torch.tensor([p.is_random for p in pairs])
    return encode


def _losses(model: Any, inputs: dict[str, torch.Tensor], mlm_labels: torch.Tensor,
            nsp_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(MLM loss, NSP loss, logits of the selected tokens, NSP logits). The vocabulary projection runs
    on the selected tokens only (15% of them): it is most of a small BERT's compute otherwise."""
    sequence, pooled = model.bert(**inputs)[:2]
    selected = mlm_labels != -100
    token_logits = model.cls.predictions(sequence[selected])
    pair_logits = model.cls.seq_relationship(pooled)
    mlm = torch.nn.functional.cross_entropy(token_logits, mlm_labels[selected])
    nsp = torch.nn.functional.cross_entropy(pair_logits, nsp_labels)
    return mlm, nsp, token_logits, pair_logits


def _evaluate(model: torch.nn.Module, batches: list[Batch], probe: Probe, step: int) -> PretrainEvaluation:
    probe.set_mode("eval")
    model.eval()
    mlm_losses, nsp_losses, mlm_hits, mlm_total, nsp_hits, nsp_total = [], [], 0, 0, 0, 0
    with torch.no_grad():
        for inputs, mlm_labels, nsp_labels in batches:
            mlm, nsp, token_logits, pair_logits = _losses(model, inputs, mlm_labels, nsp_labels)
            mlm_losses.append(float(mlm))
            nsp_losses.append(float(nsp))
            selected = mlm_labels != -100
            mlm_hits += int((token_logits.argmax(-1) == mlm_labels[selected]).sum())
            mlm_total += int(selected.sum())
            nsp_hits += int((pair_logits.argmax(-1) == nsp_labels).sum())
            nsp_total += len(nsp_labels)
    evaluation = PretrainEvaluation(step, float(np.mean(mlm_losses)), float(np.mean(nsp_losses)),
                                    mlm_hits / max(1, mlm_total), nsp_hits / nsp_total)
    probe.step(loss=evaluation.mlm_loss + evaluation.nsp_loss,
               losses={"mlm": evaluation.mlm_loss, "nsp": evaluation.nsp_loss},
               metrics={"mlm_accuracy": evaluation.mlm_accuracy, "nsp_accuracy": evaluation.nsp_accuracy})
    probe.set_mode("train")
    return evaluation

