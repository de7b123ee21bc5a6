"""The Hugging Face Trainer callback on a real Trainer and a tiny BERT: recorded gradient norms are
the unclipped ones (clipping really happens: max_grad_norm is tiny), logs land at their step, and a
planted non-finite loss stops the Trainer."""

from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

import gradprobe  # noqa: E402
from gradprobe.actions import StopTraining  # noqa: E402
from gradprobe.integrations.transformers import GradprobeCallback  # noqa: E402
from gradprobe.rules.nonfinite import NonFinite  # noqa: E402

from .tiny import UnclippedNorms, samples, tiny_bert  # noqa: E402


class TakeAtOptimizerStep(TrainerCallback):
    """Oracle bookkeeping, and the clipped total norm to prove clipping happened."""

    def __init__(self, oracle: UnclippedNorms) -> None:
        self.oracle = oracle
        self.clipped_totals: list[float] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.oracle.take()
        squares = [float(p.grad.double().norm()) ** 2 for p in model.parameters() if p.grad is not None]
        self.clipped_totals.append(float(np.sqrt(sum(squares))))


def arguments(tmp_path, **overrides) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, learning_rate=1e-3,
                logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                dataloader_num_workers=0, seed=0)
    return TrainingArguments(**{**base, **overrides})


def test_trainer_records_unclipped_gradients_and_logs(tmp_path):
    model = tiny_bert()
    oracle = UnclippedNorms(model)
    taker = TakeAtOptimizerStep(oracle)
    callback = GradprobeCallback(out_dir=tmp_path / "run", rules=[])
    args = arguments(tmp_path, max_steps=4, gradient_accumulation_steps=2, max_grad_norm=0.01,
                     eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=4)
    trainer = Trainer(model=model, args=args, train_dataset=samples(32), eval_dataset=samples(8, seed=5),
                      callbacks=[taker, callback])
    trainer.train()
    oracle.remove()

    run = gradprobe.open_run(tmp_path / "run")
    assert run.meta["status"] == "completed"
    grads = run.stats("grad")
    assert sorted(grads["step"].unique()) == [0, 1, 2, 3]
    assert len(oracle.steps) == 4  # the oracle ran (on_pre_optimizer_step exists from transformers 4.45)
    for step, expected in enumerate(oracle.steps):
        at = grads[grads["step"] == step].set_index("tensor")["l2"]
        names = sorted(expected)
        np.testing.assert_allclose(at[names].to_numpy(), [expected[n] for n in names], rtol=1e-5, atol=1e-9)
        unclipped_total = np.sqrt(sum(v * v for v in expected.values()))
        assert unclipped_total > 10 * taker.clipped_totals[step]  # clipping really happened
    scalars = run.scalars()
    train_loss = scalars[(scalars["name"] == "loss") & (scalars["mode"] == "train")]
    assert sorted(train_loss["step"]) == [0, 1, 2, 3]  # one logged loss per step, at its step
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    np.testing.assert_allclose(train_loss.sort_values("step")["value"], logged, rtol=1e-6)
    eval_loss = scalars[(scalars["name"] == "loss") & (scalars["mode"] == "eval")]
    assert len(eval_loss) == 2 and np.isfinite(eval_loss["value"]).all()


def test_a_planted_nan_loss_stops_the_trainer(tmp_path):
    model = tiny_bert(num_labels=1)
    data = samples(64, num_labels=1, nan_label_at=4 * 3)  # the 4th batch (step 3) holds a NaN label
    callback = GradprobeCallback(out_dir=tmp_path / "run", rules=[NonFinite()], actions=[StopTraining()])
    trainer = Trainer(model=model, args=arguments(tmp_path, max_steps=16, max_grad_norm=1.0),
                      train_dataset=data, callbacks=[callback])
    from torch.utils.data import SequentialSampler
    trainer._get_train_sampler = lambda *a, **k: SequentialSampler(data)  # the NaN batch comes at step 3
    trainer.train()

    run = gradprobe.open_run(tmp_path / "run")
    assert run.meta["status"] == "stopped"
    assert 3 <= trainer.state.global_step - 1 < 15  # stopped after the planted step, well before the end
    assert any(f["code"] == NonFinite.code for f in run.events("finding"))
