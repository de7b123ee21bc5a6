"""Fine-tuning end to end on a tiny BERT: a healthy run fires no rule, each --inject fires its rule,
and the command line takes hyperparameters from a file and flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradprobe.workflows.faults import INJECTIONS

TINY = {"generated_reviews": 240, "batch_size": 8, "max_length": 48, "eval_every": 6, "max_steps": 12, "lr": 5e-4,
        "save_best": False, "exist": "overwrite"}


def finetune(tiny_bert, tmp_path, **changes):
    from gradprobe.workflows.finetune import FinetuneConfig, run_finetune

    lines: list[str] = []
    config = FinetuneConfig(model=str(tiny_bert), out_dir=str(tmp_path / "run"), **{**TINY, **changes})
    return run_finetune(config, log=lines.append), lines


def test_healthy_quick_finetune_fires_nothing_and_records_everything(tiny_bert, tmp_path):
    from gradprobe import open_run

    result, lines = finetune(tiny_bert, tmp_path, save_best=True)
    assert result.findings == [], [f"{f.code} {f.message}" for f in result.findings]
    assert len(result.losses) == 12 and np.isfinite(result.losses).all()
    assert [e.step for e in result.evaluations] == [5, 11]
    assert result.test is not None and result.test.metrics.confusion.sum() == len(result.splits.test)
    run = open_run(tmp_path / "run")
    assert list(run.steps()) == list(range(12)) and list(run.steps("eval")) == [0, 1]
    assert set(run.scalars(["metric/accuracy", "metric/f1"], mode="eval").name) == {"metric/accuracy", "metric/f1"}
    assert any("classifier" in name for name in run.tensors("grad"))
    saved = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert saved["test"]["accuracy"] == result.test.metrics.accuracy and len(saved["evaluations"]) == 2
    assert (tmp_path / "run" / "best" / "config.json").is_file()
    assert any("recording to" in line for line in lines)


@pytest.mark.parametrize("name", list(INJECTIONS))
def test_each_injected_fault_fires_its_rule(tiny_bert, tmp_path, name):
    from gradprobe.workflows.baseline import BaselineResult
    from gradprobe.workflows.demo import DemoResult, summary

    # A tiny randomly initialised BERT memorises its 32 reviews only at a higher learning rate.
    changes = {"lr": 3e-3} if name == "overfit" else {}
    result, lines = finetune(tiny_bert, tmp_path, inject=name, **changes)
    codes = {f.code for f in result.findings}
    assert INJECTIONS[name].rule in codes, (name, [f"{f.code} {f.message}" for f in result.findings])
    assert any(f"injected fault '{name}'" in line for line in lines)
    assert result.injected is INJECTIONS[name]
    assert result.test is not None  # the run completes (or stops cleanly) and is still evaluated
    shown = summary(DemoResult(result, BaselineResult(result.test.metrics, 0.0), None))
    assert any(f"expected rule {INJECTIONS[name].rule} fired" in line for line in shown), shown


def test_cli_takes_a_config_file_and_flags_win(tiny_bert, tmp_path, capsys):
    from gradprobe.cli import main

    config = tmp_path / "hp.yaml"
    config.write_text(f"model: {tiny_bert}\ngenerated_reviews: 120\nbatch_size: 8\nmax_steps: 50\nlr: 0.0005\n"
                      "eval_every: 3\n")
    out = tmp_path / "cli-run"
    assert main(["finetune", "--config", str(config), "--max-steps", "4", "--no-save-best", "--out", str(out),
                 "--no-progress"]) == 0
    saved = json.loads((out / "finetune.json").read_text())
    assert saved["config"]["max_steps"] == 4 and saved["config"]["batch_size"] == 8
    assert "test accuracy" in capsys.readouterr().out
    config.write_text("learning_rate: 1\n")
    assert main(["finetune", "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    assert "unknown keys learning_rate" in capsys.readouterr().err


def test_frozen_layers_stay_unchanged_and_are_not_reported_as_untrained(tiny_bert, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    result, _ = finetune(tiny_bert, tmp_path, freeze_layers=1, max_steps=6, mixed_precision="bf16", save_best=True)
    assert result.findings == [], [f"{f.code} {f.message}" for f in result.findings]
    before = AutoModelForSequenceClassification.from_pretrained(tiny_bert).state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "best").state_dict()
    frozen = "bert.encoder.layer.0.intermediate.dense.weight"
    assert torch.equal(before[frozen], after[frozen])
    assert not torch.equal(before["bert.encoder.layer.1.intermediate.dense.weight"],
                           after["bert.encoder.layer.1.intermediate.dense.weight"])
