"""The probe's weights, updates and gradients of parameters in unusual layouts, parameters whose
data is replaced between steps, and tensors it cannot measure, against statistics computed
independently in float64 on contiguous copies."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradprobe import Probe, open_run


class Odd(torch.nn.Module):
    """Parameters in every layout a model can hold: channels_last, transposed, stepped slice,
    narrowed (dense with an offset), and a frozen expanded (stride-0) one."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Parameter(torch.randn(4, 3, 3, 3, generator=g).contiguous(
            memory_format=torch.channels_last))
        self.transposed = torch.nn.Parameter(torch.randn(6, 5, generator=g).t())
        self.stepped = torch.nn.Parameter(torch.randn(12, 10, generator=g)[::2, 1::2])
        self.narrowed = torch.nn.Parameter(torch.randn(9, 5, generator=g).narrow(0, 3, 5))
        self.expanded = torch.nn.Parameter(torch.randn(5, 1, generator=g).expand(5, 5), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.conv2d(x, self.conv).mean((2, 3))  # (n, 4)
        h = torch.cat([h, h[:, :1]], 1)  # (n, 5)
        h = h @ self.transposed  # (n, 6)
        h = h[:, :5] @ self.narrowed @ self.expanded + h[:, :5] @ self.stepped.t()[:5, :5]
        return h


def row(frame, step, name):
    rows = frame[(frame.step == step) & (frame.tensor == name)]
    assert len(rows) == 1, f"{name} step {step}: {len(rows)} rows"
    return rows.iloc[0]


def train(model, opt, probe, steps, seed, between=None):
    history = []
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if between is not None:
            between(step)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        model(torch.randn(3, 3, 6, 6, generator=g)).square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        opt.zero_grad()
        probe.step()
        after = {n: p.detach().clone() for n, p in model.named_parameters()}
        history.append((before, grads, after))
    return history


def check(run, history, names):
    weights, updates, grads = run.stats("weight"), run.stats("update"), run.stats("grad")
    for step, (before, grad, after) in enumerate(history):
        for name in names:
            w = row(weights, step, name)
            assert w.l2 == pytest.approx(before[name].double().norm().item(), rel=1e-6), (step, name)
            assert w["min"] == before[name].min().item() and w.numel == before[name].numel()
            if name in grad:
                assert row(grads, step, name).l2 == pytest.approx(grad[name].double().norm().item(), rel=1e-6)
                delta = after[name].double() - before[name].double()
                u = row(updates, step, name)
                assert u.l2 == pytest.approx(delta.norm().item(), rel=1e-6, abs=1e-12), (step, name)
                assert u["max"] == pytest.approx(delta.max().item(), rel=1e-6, abs=1e-12)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from(["SGD", "Adam"]))
def test_weights_updates_and_gradients_of_parameters_in_any_layout(tmp_path_factory, seed, optimizer):
    model = Odd(seed)
    opt = getattr(torch.optim, optimizer)(model.parameters(), lr=0.01)
    out = tmp_path_factory.mktemp("run")
    with Probe(model, opt, out_dir=out / "run") as probe:
        history = train(model, opt, probe, 3, seed)
    # Layouts are the subject here; a seed whose loss overflows (gradprobe's statistics then cover
    # the finite values only, tested elsewhere) says nothing about them.
    assume(all(torch.isfinite(g).all() for _, grads, _ in history for g in grads.values()))
    check(open_run(out / "run"), history, [n for n, _ in model.named_parameters()])


@pytest.mark.parametrize("swap", ["larger", "smaller", "transposed"])
def test_param_data_replaced_between_steps_never_crashes_and_is_measured_after(tmp_path, swap):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    history = []
    with Probe(model, opt, out_dir=tmp_path / "run") as probe:
        for step in range(6):
            if step == 3:  # replace the storage under the optimizer, as some fine-tuning code does
                if swap == "larger":
                    model[0].weight.data = torch.randn(256, 64)
                    model[1].weight.data = torch.randn(1, 256)
                    model[0].bias.data = torch.randn(256)
                elif swap == "smaller":
                    model[0].weight.data = torch.randn(16, 64)
                    model[1].weight.data = torch.randn(1, 16)
                    model[0].bias.data = torch.randn(16)
                else:  # same values, other memory order (the snapshot's strides no longer match)
                    model[0].weight.data = model[0].weight.detach().t().contiguous().t()
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            model(torch.randn(8, 64, generator=g)).square().mean().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
            after = {n: p.detach().clone() for n, p in model.named_parameters()}
            history.append((before, after))
    weights, updates = open_run(tmp_path / "run").stats("weight"), open_run(tmp_path / "run").stats("update")
    for step, (before, after) in enumerate(history):
        for name in before:
            w = weights[(weights.step == step) & (weights.tensor == name)]
            u = updates[(updates.step == step) & (updates.tensor == name)]
            if step == 3 and (w.empty or u.empty):
                continue  # the step whose snapshot no longer matched: not measured, never mismeasured
            assert w.iloc[0].l2 == pytest.approx(before[name].double().norm().item(), rel=1e-6), (step, name)
            delta = (after[name].double() - before[name].double()).norm().item()
            assert u.iloc[0].l2 == pytest.approx(delta, rel=1e-6), (step, name)
            assert u.iloc[0].numel == before[name].numel()


def test_one_sparse_gradient_is_skipped_by_name_and_the_rest_measured(tmp_path):
    model = torch.nn.ModuleDict({"embed": torch.nn.Embedding(20, 4, sparse=True), "head": torch.nn.Linear(4, 2)})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught, Probe(model, opt, out_dir=tmp_path / "run") as probe:
        warnings.simplefilter("always")
        for _ in range(3):
            model["head"](model["embed"](torch.randint(0, 20, (5,)))).sum().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    grads = open_run(tmp_path / "run").stats("grad")
    head = grads[grads.tensor == "head.weight"]
    assert len(head) == 3 and (head.numel == 8).all() and np.isfinite(head.l2).all()
    embed = grads[grads.tensor == "embed.weight"]
    assert (embed.numel == 0).all()  # present as a row without data
    assert not [w for w in caught if "tensor_skipped" in str(w.message)]  # an event, not a warning
    skipped = open_run(tmp_path / "run").events("tensor_skipped")
    assert [(e["kind"], e["tensor"]) for e in skipped] == [("grad", "embed.weight")]
    assert "sparse" in skipped[0]["reason"]


def test_a_probe_without_an_optimizer_records_weights_on_its_schedule(tmp_path):
    model = torch.nn.Linear(6, 3)
    with Probe(model, out_dir=tmp_path / "run") as probe:
        for _ in range(3):
            model(torch.randn(4, 6)).sum().backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
                    p.grad = None
            probe.step()
    weights = open_run(tmp_path / "run").stats("weight")
    assert sorted(set(weights.step)) == [0, 1, 2] and set(weights.tensor) == {"weight", "bias"}
