"""Every capture point on real tiny models, checked against statistics computed independently."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import gradprobe
from gradprobe import Probe, open_run, tensor_stats

from .helpers import TinyMLP, batch, train_steps


def grads_row(run, kind, step, tensor):
    frame = run.stats(kind)
    rows = frame[(frame.step == step) & (frame.tensor == tensor)]
    assert len(rows) == 1, f"{kind} {tensor} step {step}: {len(rows)} rows"
    return rows.iloc[0]


def test_gradients_weights_updates_match_independent_statistics(tmp_path):
    torch.manual_seed(0)
    model = TinyMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    seen = []
    with Probe(model, opt, out_dir=tmp_path / "run") as probe:
        for step in range(4):
            x, y = batch(step)
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            torch.nn.functional.cross_entropy(model(x), y).backward()
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
            opt.step()
            opt.zero_grad()
            probe.step()
            after = {n: p.detach().clone() for n, p in model.named_parameters()}
            seen.append((before, grads, after))
    run = open_run(tmp_path / "run")
    names = [n for n, _ in model.named_parameters()]
    assert run.tensors("grad") == names
    for step, (before, grads, after) in enumerate(seen):
        for name in names:
            want = tensor_stats([grads[name]], backend="torch")
            got = grads_row(run, "grad", step, name)
            assert got.numel == want.numel[0] and got.l2 == pytest.approx(want.l2[0], rel=1e-6)
            assert got["min"] == want.min[0] and got["max"] == want.max[0]
            w = grads_row(run, "weight", step, name)  # the weights the step's forward used
            assert w.l2 == pytest.approx(before[name].double().norm().item(), rel=1e-6)
            u = grads_row(run, "update", step, name)
            delta = (after[name].double() - before[name].double())
            assert u.l2 == pytest.approx(delta.norm().item(), rel=1e-6)
            assert u.ratio == pytest.approx(delta.norm().item() / before[name].double().norm().item(), rel=1e-6)
    hist_rows, counts, edges = run.hist("grad")
    assert counts.shape == (len(hist_rows), gradprobe.HIST_BINS) and len(edges) == gradprobe.HIST_BINS + 1
    assert (counts.sum(1) == run.stats("grad")["numel"].to_numpy() - run.stats("grad")["zeros"].to_numpy()).all()


def test_activations_follow_their_schedule_and_name_repeated_modules(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run") as probe:  # default: activations every 10 steps
        train_steps(model, opt, probe, 21)
    acts = open_run(tmp_path / "run").stats("activation")
    assert sorted(acts.step.unique()) == [0, 10, 20]
    names = set(acts.tensor)
    assert {"fc1", "fc2", "fc2#1", "head", "act", "act#1", "act#2", "act:input", "act#2:input"} <= names
    relu = acts[(acts.step == 0) & (acts.tensor == "act")].iloc[0]
    assert relu.zeros > 0 and relu["min"] == 0.0  # ReLU outputs: the zero fraction is recorded
    pre = acts[(acts.step == 0) & (acts.tensor == "act:input")].iloc[0]
    assert pre["min"] < 0


def test_scalars_losses_metrics_modes_and_non_finite_loss(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run") as probe:
        train_steps(model, opt, probe, 3, losses={"mlm": torch.tensor(2.0), "nsp": 0.5}, metrics={"f1": 0.25})
        probe.set_mode("eval")
        with torch.no_grad():
            for i in range(2):
                x, y = batch(100 + i)
                probe.step(loss=torch.nn.functional.cross_entropy(model(x), y), metrics={"accuracy": 0.5})
        probe.step(loss=float("nan"), mode="train")
        assert probe.current_step("train") == 4 and probe.current_step("eval") == 2
    scalars = open_run(tmp_path / "run").scalars()
    train = scalars[scalars["mode"] == "train"]
    assert set(train.name) >= {"loss", "loss/mlm", "loss/nsp", "metric/f1", "lr", "gradprobe/overhead_ms"}
    assert train[(train.name == "loss/mlm")].value.tolist() == [2.0, 2.0, 2.0]
    evals = scalars[scalars["mode"] == "eval"]
    assert sorted(evals[evals.name == "loss"].step) == [0, 1]
    nan_loss = train[(train.name == "loss") & (train.step == 3)].value.iloc[0]
    assert np.isnan(nan_loss)


def test_gradient_accumulation_records_once_per_optimizer_step(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    accumulated = []
    with Probe(model, opt, out_dir=tmp_path / "run") as probe:
        for step in range(3):
            for micro in range(4):
                x, y = batch(10 * step + micro)
                (torch.nn.functional.cross_entropy(model(x), y) / 4).backward()
            accumulated.append(model.head.weight.grad.detach().clone())
            opt.step()
            opt.zero_grad()
            probe.step()
    grads = open_run(tmp_path / "run").stats("grad")
    head = grads[grads.tensor == "head.weight"]
    assert head.step.tolist() == [0, 1, 2]
    for step, g in enumerate(accumulated):
        assert head.l2.iloc[step] == pytest.approx(g.double().norm().item(), rel=1e-6)


def test_gradients_are_taken_before_clipping(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run") as probe:
        x, y = batch(0)
        (100 * torch.nn.functional.cross_entropy(model(x), y)).backward()
        raw = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.01)
        opt.step()
        opt.zero_grad()
        probe.step()
    grads = open_run(tmp_path / "run").stats("grad")
    assert np.sqrt((grads.l2 ** 2).sum()) == pytest.approx(raw, rel=1e-5)


def test_grad_scaler_gives_unscaled_gradients(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch(0)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    want = model.head.weight.grad.double().norm().item()
    opt.zero_grad()
    with Probe(model, opt, out_dir=tmp_path / "run", scaler=scaler) as probe:
        scaler.scale(torch.nn.functional.cross_entropy(model(x), y)).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        probe.step()
    run = open_run(tmp_path / "run")
    assert grads_row(run, "grad", 0, "head.weight").l2 == pytest.approx(want, rel=1e-5)
    assert run.scalars(["loss_scale"]).value.iloc[0] == 1024.0


def test_bfloat16_autocast_on_cpu(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run", config="full") as probe:
        for step in range(2):
            x, y = batch(step)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
    run = open_run(tmp_path / "run")
    grads = run.stats("grad")
    assert len(grads) == 2 * 6 and grads.present.all() and (grads.finite == grads.numel).all()
    acts = run.stats("activation")
    assert len(acts[acts.step == 1]) > 0 and (acts.finite > 0).all()


def test_frozen_and_unused_parameters(tmp_path):
    model = TinyMLP(frozen=True, with_unused=True)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run") as probe:
        for step in range(2):
            x, y = batch(step)
            torch.nn.functional.cross_entropy(model(x, use_unused=step == 1), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            probe.step()
    run = open_run(tmp_path / "run")
    grads = run.stats("grad")
    assert "fc1.weight" not in set(grads.tensor)  # frozen: never a gradient
    assert "fc1.weight" in set(run.stats("weight").tensor)
    unused = grads[grads.tensor == "unused.weight"].set_index("step")
    assert not unused.loc[0, "present"] and unused.loc[1, "present"]
    assert unused.loc[0, "numel"] == 0 and np.isnan(unused.loc[0, "l2"])


def test_tied_parameters_counted_once_listed_under_every_alias(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 8)
            self.out = torch.nn.Linear(8, 50, bias=False)
            self.out.weight = self.embed.weight

        def forward(self, ids):
            return self.out(self.embed(ids))

    model = Tied()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run") as probe:
        ids = torch.randint(0, 50, (4, 6))
        torch.nn.functional.cross_entropy(model(ids).reshape(-1, 50), ids.reshape(-1)).backward()
        opt.step()
        opt.zero_grad()
        probe.step()
    run = open_run(tmp_path / "run")
    assert run.stats("grad").tensor.tolist() == ["embed.weight"]
    assert run.meta["aliases"] == {"out.weight": "embed.weight"}
    assert run.meta["parameters"][0]["aliases"] == ["out.weight"]


def test_resized_embedding_is_followed(tmp_path):
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def one_step(probe, vocab):
        ids = torch.randint(0, vocab, (5, 3))
        model(ids).sum().backward()
        opt.step()
        opt.zero_grad()
        probe.step()

    with Probe(model, opt, out_dir=tmp_path / "run") as probe:
        one_step(probe, 10)
        model[0].weight = torch.nn.Parameter(torch.randn(20, 4))  # resize_token_embeddings does this
        opt.add_param_group({"params": [model[0].weight]})
        one_step(probe, 20)
    run = open_run(tmp_path / "run")
    rows = run.stats("weight")
    embed = rows[rows.tensor == "0.weight"].set_index("step")
    assert embed.loc[0, "numel"] == 40 and embed.loc[1, "numel"] == 80
    assert any(e["type"] == "model_changed" for e in run.events())


def test_close_removes_every_hook_and_is_idempotent(tmp_path):
    original_clip = torch.nn.utils.clip_grad_norm_
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, opt, out_dir=tmp_path / "run", config="full")
    assert torch.nn.utils.clip_grad_norm_ is original_clip  # nothing of torch's is replaced
    train_steps(model, opt, probe, 2)
    probe.close()
    probe.close()
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert torch.nn.utils.clip_grad_norm_ is original_clip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe.step(loss=1.0)
        probe.step(loss=1.0)
    assert len([w for w in caught if "after close" in str(w.message)]) == 1
    events = [e["type"] for e in open_run(tmp_path / "run").events() if e["type"] != "rule_summary"]
    assert events == ["start", "close"]
