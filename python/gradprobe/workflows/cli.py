"""The workflow subcommands: demo, finetune, pretrain, models. torch and transformers load only when one
of the training commands runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .faults import INJECTIONS
from .models import find_models, format_table
from .rundir import RunDirectoryExists, check_run_dir, refusal_line

_FINETUNE_FLAGS: dict[str, tuple[type, str]] = {
    "model": (str, "a local Hugging Face BERT/RoBERTa directory (default: the packaged all-MiniLM-L6-v2)"),
    "data": (str, "a review CSV file or a saved `datasets` directory (default: generated reviews)"),
    "text_column": (str, "the CSV/dataset column of the review text (default: text)"),
    "rating_column": (str, "the column of 1-5 star ratings (e.g. Rating)"),
    "label_column": (str, "the column of labels: negative/neutral/positive or 0-2"),
    "lr": (float, "peak learning rate (default 5e-5)"),
    "epochs": (float, "epochs over the training split (default 1)"),
    "max_steps": (int, "optimizer steps (overrides --epochs)"),
    "batch_size": (int, "examples per micro-batch (default 16)"),
    "max_length": (int, "tokens per review, longer ones truncated (default 64)"),
    "warmup_ratio": (float, "share of the steps with a linear warm-up (default 0.1)"),
    "weight_decay": (float, "AdamW weight decay (default 0.01)"),
    "freeze_layers": (int, "freeze the embeddings and the first N encoder layers"),
    "gradient_accumulation": (int, "micro-batches per optimizer step (default 1)"),
    "mixed_precision": (str, "no, bf16 or fp16 (CUDA only)"),
    "seed": (int, "random seed (default 0)"),
    "eval_every": (int, "evaluate on the validation split every N steps (default 50)"),
    "preset": (str, "gradprobe preset or config file (default: default)"),
}
# What progress.TrainingProgress prints without a bar.
PROGRESS_HELP = ("print a progress line every 10%% of the steps or every 30 s, whichever comes first, instead of "
                 "a progress bar (lines are also what is printed when stdout is not a terminal)")
OVERWRITE_HELP = "replace a run already in --out (without it, an existing run is refused before anything loads)"


def add_parsers(commands: Any) -> None:
    """Registers the workflow subcommands on the CLI's subparsers."""
    demo = commands.add_parser("demo", help="fine-tune the pre-trained MiniLM on product reviews beside a "
                               "bag-of-n-grams baseline, watching every gradient (the README's main job)")
    demo.add_argument("--quick", action="store_true", help="a sub-minute version (few steps, small split)")
    demo.add_argument("--steps", type=int, default=None, help="optimizer steps (default 100; --quick 12)")
    demo.add_argument("--lr", type=float, default=None)
    demo.add_argument("--batch-size", type=int, default=None)
    demo.add_argument("--model", default=None, help="a Hugging Face model directory (default: the packaged MiniLM)")
    demo.add_argument("--out", default=None, help="run directory (default: runs/demo-<time>)")
    demo.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    _common(demo)
    demo.set_defaults(handler=_refusing_an_existing_run("demo", _cmd_demo))

    finetune = commands.add_parser("finetune", help="fine-tune a local BERT/RoBERTa on reviews "
                                   "(negative/neutral/positive) with gradprobe attached")
    finetune.add_argument("--config", default=None, help="hyperparameters from a YAML/JSON file (flags win)")
    for name, (kind, text) in _FINETUNE_FLAGS.items():
        finetune.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)
    finetune.add_argument("--no-save-best", action="store_true", help="do not save the best checkpoint to RUN/best")
    finetune.add_argument("--out", default=None, help="run directory (default: runs/finetune-<time>)")
    finetune.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    _common(finetune)
    finetune.set_defaults(handler=_refusing_an_existing_run("finetune", _cmd_finetune))

    pretrain = commands.add_parser("pretrain", help="pretrain a small BERT with MLM + NSP, gradprobe attached")
    pretrain.add_argument("--config", default=None, help="settings from a YAML/JSON file (flags win)")
    pretrain.add_argument("--corpus", default=None, help="a text file or directory of *.txt: one sentence per "
                          "line, blank lines between documents (default: generated reviews by product)")
    pretrain.add_argument("--tokenizer", default=None, help="a tokenizer directory (default: the packaged MiniLM's)")
    pretrain.add_argument("--bert-config", default=None, help="a BERT config.json (default: 2 layers, hidden 128)")
    for name, kind in (("steps", int), ("batch_size", int), ("max_length", int), ("lr", float), ("hidden_size", int),
                       ("layers", int), ("heads", int), ("eval_every", int), ("seed", int), ("preset", str)):
        pretrain.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    pretrain.add_argument("--out", default=None, help="run directory (default: runs/pretrain-<time>)")
    pretrain.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    pretrain.add_argument("--no-progress", action="store_true", help=PROGRESS_HELP)
    pretrain.set_defaults(handler=_refusing_an_existing_run("pretrain", _cmd_pretrain))

    models = commands.add_parser("models", help="list the pre-trained models on this machine (packaged, "
                                 "Hugging Face cache, named directories)")
    models.add_argument("dirs", nargs="*", help="more directories to search for models (config.json)")
    models.set_defaults(handler=_cmd_models)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inject", choices=list(INJECTIONS), default=None,
                        help="alter the run so that one rule fires: " + ", ".join(
                            f"{i.name} ({i.rule})" for i in INJECTIONS.values()))
    parser.add_argument("--no-progress", action="store_true", help=PROGRESS_HELP)


def _refusing_an_existing_run(command: str, handler: Callable[[argparse.Namespace], int]) -> Callable[
        [argparse.Namespace], int]:
    """An existing run in --out is one line naming it and the flag to use (exit 2), said before torch,
    data or model load; the workflow checks again for an out_dir from a config file."""
    def checked(args: argparse.Namespace) -> int:
        try:
            if args.out and not getattr(args, "config", None):  # a config file may say exist: overwrite
                check_run_dir(Path(args.out), _exist(args))
            return handler(args)
        except RunDirectoryExists as exists:
            print(refusal_line(command, exists.path), file=sys.stderr)
            return 2
    return checked


def _exist(args: argparse.Namespace) -> str:
    return "overwrite" if args.overwrite else "error"


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import demo  # torch and transformers: imported only here

    config = demo.demo_config(args.quick, max_steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                              model=args.model, out_dir=args.out, inject=args.inject, exist=_exist(args))
    demo.run_demo(config, show_progress=_show(args))
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, run_finetune  # torch and transformers: imported only here

    overrides: dict[str, Any] = {name: getattr(args, name) for name in _FINETUNE_FLAGS
                                 if getattr(args, name) is not None}
    overrides.update({k: v for k, v in (("out_dir", args.out), ("inject", args.inject)) if v is not None})
    if args.no_save_best:
        overrides["save_best"] = False
    if args.overwrite:  # else a config file's exist, or the default: error
        overrides["exist"] = "overwrite"
    config = FinetuneConfig.from_file(args.config, **overrides) if args.config else FinetuneConfig(**overrides)
    result = run_finetune(config, show_progress=_show(args))
    if result.test is not None:
        print(f"test accuracy {result.test.metrics.accuracy:.3f}, macro F1 {result.test.metrics.macro_f1:.3f} "
              f"(best validation at step {result.best_step})")
    _print_findings(result.findings)
    if result.injected is not None:
        fired = any(f.code == result.injected.rule for f in result.findings)
        print(f"injected '{result.injected.name}': rule {result.injected.rule} {'fired' if fired else 'did not fire'}")
    best = f"  best checkpoint: {result.run_dir / 'best'}" if config.save_best else ""
    print(f"run directory: {result.run_dir}{best}")
    _print_report(result.report)
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import PretrainConfig, run_pretrain  # torch and transformers: imported only here

    names = ("corpus", "tokenizer", "bert_config", "steps", "batch_size", "max_length", "lr", "hidden_size", "layers",
             "heads", "eval_every", "seed", "preset")
    overrides: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.out:
        overrides["out_dir"] = args.out
    if args.overwrite:  # else a config file's exist, or the default: error
        overrides["exist"] = "overwrite"
    config = PretrainConfig.from_file(args.config, **overrides) if args.config else PretrainConfig(**overrides)
    result = run_pretrain(config, show_progress=_show(args))
    if result.evaluations:
        last = result.evaluations[-1]
        print(f"held-out MLM accuracy {last.mlm_accuracy:.3f}, NSP accuracy {last.nsp_accuracy:.3f}")
    _print_findings(result.findings)
    print(f"run directory: {result.run_dir}")
    _print_report(result.report)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    print(format_table(find_models(args.dirs)))
    return 0


def _show(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stdout.isatty()


def _print_report(report: Path | None) -> None:
    print(f"report: {report}" if report is not None else "report: not written (the warning above says why)")


def _print_findings(findings: list[Any]) -> None:
    if not findings:
        print("findings: none")
    for f in findings:
        print(f"finding: step {f.step} ({f.mode}) [{f.code} {f.rule}] {f.message}")
