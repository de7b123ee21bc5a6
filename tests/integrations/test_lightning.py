"""The Lightning callback on a real Lightning Trainer and a tiny BERT: gradients recorded in
on_before_optimizer_step are the accumulated, unclipped ones (gradient_clip_val is tiny, so
clipping really happens), validation is an eval step, and a planted non-finite loss stops fit()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pl = pytest.importorskip("lightning.pytorch")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import gradprobe  # noqa: E402
from gradprobe.actions import StopTraining  # noqa: E402
from gradprobe.integrations.lightning import GradprobeCallback  # noqa: E402
from gradprobe.rules.nonfinite import NonFinite  # noqa: E402

from .tiny import UnclippedNorms, samples, tiny_bert  # noqa: E402


class TinyBertModule(pl.LightningModule):
    def __init__(self, num_labels: int = 2) -> None:
        super().__init__()
        self.model = tiny_bert(num_labels)
        self.clipped_totals: list[float] = []

    def training_step(self, batch, batch_idx):
        return self.model(**batch).loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.model(**batch).loss)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        squares = [float(p.grad.double().norm()) ** 2 for p in self.parameters() if p.grad is not None]
        self.clipped_totals.append(float(np.sqrt(sum(squares))))


class TakeBeforeOptimizerStep(pl.Callback):
    def __init__(self, oracle: UnclippedNorms) -> None:
        self.oracle = oracle

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.oracle.take()


def trainer(callbacks, **overrides) -> pl.Trainer:
    base = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0)
    return pl.Trainer(callbacks=callbacks, **{**base, **overrides})


def test_lightning_records_accumulated_unclipped_gradients(tmp_path):
    module = TinyBertModule()
    oracle = UnclippedNorms(module)
    callback = GradprobeCallback(out_dir=tmp_path / "run", rules=[], lightning_logger=True)
    logger = CSVLogger(tmp_path / "logs", name="tiny")
    fit = trainer([TakeBeforeOptimizerStep(oracle), callback], max_steps=4, accumulate_grad_batches=2,
                  gradient_clip_val=0.01, val_check_interval=4, limit_val_batches=2, logger=logger)
    fit.fit(module, DataLoader(samples(32), batch_size=4), DataLoader(samples(8, seed=5), batch_size=4))
    oracle.remove()

    run = gradprobe.open_run(tmp_path / "run")
    assert run.meta["status"] == "completed"
    grads = run.stats("grad")
    assert sorted(grads["step"].unique()) == [0, 1, 2, 3]
    assert len(oracle.steps) == 4
    for step, expected in enumerate(oracle.steps):
        at = grads[grads["step"] == step].set_index("tensor")["l2"]
        names = sorted(expected)
        np.testing.assert_allclose(at[names].to_numpy(), [expected[n] for n in names], rtol=1e-5, atol=1e-9)
        assert np.sqrt(sum(v * v for v in expected.values())) > 10 * module.clipped_totals[step]
    scalars = run.scalars()
    assert sorted(scalars[(scalars["name"] == "loss") & (scalars["mode"] == "train")]["step"]) == [0, 1, 2, 3]
    eval_loss = scalars[(scalars["name"] == "loss") & (scalars["mode"] == "eval")]
    assert len(eval_loss) >= 1 and np.isfinite(eval_loss["value"]).all()
    logged = pd.read_csv(Path(logger.log_dir) / "metrics.csv")
    assert sorted(logged.dropna(subset=["gradprobe/findings"])["step"]) == [0, 1, 2, 3]


def test_a_planted_nan_loss_stops_lightning(tmp_path):
    module = TinyBertModule(num_labels=1)
    data = samples(64, num_labels=1, nan_label_at=4 * 3)  # batch 3 (step 3) holds a NaN label
    callback = GradprobeCallback(out_dir=tmp_path / "run", rules=[NonFinite()], actions=[StopTraining()])
    fit = trainer([callback], max_steps=16, gradient_clip_val=1.0, limit_val_batches=0)
    fit.fit(module, DataLoader(data, batch_size=4, shuffle=False))

    run = gradprobe.open_run(tmp_path / "run")
    assert run.meta["status"] == "stopped"
    assert 3 <= fit.global_step - 1 < 15
    assert any(f["code"] == NonFinite.code for f in run.events("finding"))
