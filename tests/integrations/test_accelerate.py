"""accelerate on one CPU process with gradient accumulation and tiny clipping: recorded gradient
norms are the accumulated, unclipped ones, micro-batches do not end steps, and a planted NaN loss
ends the loop through accelerate's trigger."""

from __future__ import annotations

import numpy as np
import pytest

accelerate = pytest.importorskip("accelerate")

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.state import AcceleratorState, GradientState  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import gradprobe  # noqa: E402
from gradprobe.actions import StopTraining  # noqa: E402
from gradprobe.integrations.accelerate import attach, end_step  # noqa: E402
from gradprobe.rules.nonfinite import NonFinite  # noqa: E402

from .tiny import UnclippedNorms, samples, tiny_bert  # noqa: E402


@pytest.fixture
def accelerator():
    made = Accelerator(cpu=True, gradient_accumulation_steps=2)
    yield made
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def loop(accelerator, model, data, probe, oracle=None, clip=0.01, steps=40) -> int:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer, loader = accelerator.prepare(model, optimizer, DataLoader(data, batch_size=4))
    probe = probe(model, optimizer)
    optimizer_steps = 0
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                if oracle is not None:
                    oracle.take()
                accelerator.clip_grad_norm_(model.parameters(), clip)
                optimizer_steps += 1
            optimizer.step()
            optimizer.zero_grad()
        if end_step(accelerator, probe, loss) or optimizer_steps == steps:
            break
    probe.close()
    return optimizer_steps


def test_accelerate_records_accumulated_unclipped_gradients(tmp_path, accelerator):
    model = tiny_bert()
    oracle = UnclippedNorms(model)
    steps = loop(accelerator, model, samples(32), lambda m, o: attach(accelerator, m, o, tmp_path / "run", rules=[]),
                 oracle, steps=3)
    run = gradprobe.open_run(tmp_path / "run")
    grads = run.stats("grad")
    assert steps == 3 and sorted(grads["step"].unique()) == [0, 1, 2]  # micro-batches did not end steps
    assert len(oracle.steps) == 3
    for step, expected in enumerate(oracle.steps):
        at = grads[grads["step"] == step].set_index("tensor")["l2"]
        names = sorted(expected)
        np.testing.assert_allclose(at[names].to_numpy(), [expected[n] for n in names], rtol=1e-5, atol=1e-9)
        assert np.sqrt(sum(v * v for v in expected.values())) > 0.1  # far above the clip at 0.01


def test_a_planted_nan_loss_stops_through_the_trigger(tmp_path, accelerator):
    model = tiny_bert(num_labels=1)
    data = samples(160, num_labels=1, nan_label_at=4 * 6)  # micro-batch 6: optimizer step 3
    steps = loop(accelerator, model, data, lambda m, o: attach(accelerator, m, o, tmp_path / "run",
                                                               rules=[NonFinite()], actions=[StopTraining()]),
                 clip=1.0, steps=20)
    assert 4 <= steps < 20
    assert gradprobe.open_run(tmp_path / "run").meta["status"] == "stopped"
