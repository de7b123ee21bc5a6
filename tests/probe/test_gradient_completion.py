"""Gradients are recorded as the backward that ends the step leaves them, whatever changes them
afterwards: every clipping route torch offers (bound before or after the probe exists), a
hand-written in-place change, a GradScaler's unscale (given, found, or left to a fused optimizer),
gradient accumulation. Oracle: the float64 norm of each gradient cloned right after the backward.
Where the probe cannot have measured before a change, it says so (warning, event, meta.json)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.nn.utils import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm

from gradprobe import Probe, open_run

from .helpers import TinyMLP, batch

LOUD = 100.0  # scales the loss so that every clipping route below really changes the gradients


def clip_by_norm_bound_early(params):
    clip_grad_norm_(params, max_norm=1e-3)


def clip_by_norm_looked_up_late(params):
    torch.nn.utils.clip_grad_norm_(params, max_norm=1e-3)


def clip_by_value_bound_early(params):
    clip_grad_value_(params, clip_value=1e-4)


def clip_by_value_looked_up_late(params):
    torch.nn.utils.clip_grad_value_(params, clip_value=1e-4)


def clip_by_total_norm_then_scale(params):  # accelerate >= 1.16's route
    params = list(params)
    total = get_total_norm([p.grad for p in params])
    clip_grads_with_norm_(params, max_norm=1e-3, total_norm=total)


def hand_written_scale(params):
    with torch.no_grad():
        for p in params:
            p.grad.mul_(1e-3)


def foreach_scale(params):
    torch._foreach_mul_([p.grad for p in params], 1e-3)


ROUTES = [clip_by_norm_bound_early, clip_by_norm_looked_up_late, clip_by_value_bound_early,
          clip_by_value_looked_up_late, clip_by_total_norm_then_scale, hand_written_scale, foreach_scale]


def norms(model: torch.nn.Module) -> dict[str, float]:
    return {name: p.grad.detach().double().norm().item() for name, p in model.named_parameters()
            if p.grad is not None}


def recorded(run_dir) -> dict[int, dict[str, float]]:
    grads = open_run(run_dir).stats("grad")
    grads = grads[grads.present]
    return {int(step): dict(zip(rows.tensor, rows.l2)) for step, rows in grads.groupby("step")}


def assert_same(got: dict[str, float], expected: dict[str, float]) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-30), name


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.__name__)
@pytest.mark.parametrize("micro_batches", [1, 2])
def test_gradients_are_recorded_before_any_clipping_route(tmp_path, route, micro_batches):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    expected = []
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:
        for step in range(4):
            for micro in range(micro_batches):
                x, y = batch(10 * step + micro)
                (LOUD * torch.nn.functional.cross_entropy(model(x), y) / micro_batches).backward()
            expected.append(norms(model))
            route(model.parameters())
            after = norms(model)
            assert all(after[n] < 0.5 * expected[-1][n] for n in after)  # the route really changed them
            opt.step()
            opt.zero_grad()
            probe.step()
    got = recorded(tmp_path / "run")
    assert sorted(got) == [0, 1, 2, 3]
    for step, values in enumerate(expected):
        assert_same(got[step], values)
    assert "gradient_capture" not in open_run(tmp_path / "run").meta  # nothing to say: all measured in time


def loud_step(model, seed: int) -> torch.Tensor:
    x, y = batch(seed)
    return LOUD * torch.nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("given", [True, False], ids=["scaler given", "scaler found"])
def test_grad_scaler_unscale_then_clip_records_unscaled_preclip_gradients(tmp_path, given):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    expected = []
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[], scaler=scaler if given else None) as probe:
        for step in range(3):
            scaler.scale(loud_step(model, step)).backward()
            scale = scaler.get_scale()
            expected.append({n: v / scale for n, v in norms(model).items()})
            scaler.unscale_(opt)
            clip_grad_norm_(model.parameters(), max_norm=1e-3)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            probe.step()
    got = recorded(tmp_path / "run")
    for step, values in enumerate(expected):
        assert_same(got[step], values)
    run = open_run(tmp_path / "run")
    assert (run.scalars(["loss_scale"]).value > 1).all()  # a found scaler's scale is recorded too


def test_a_fused_optimizer_that_unscales_in_its_kernel_is_divided_by_its_scale(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    model = TinyMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    expected = []
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:  # the scaler is not given
        for step in range(3):
            scaler.scale(loud_step(model, step)).backward()
            expected.append({n: v / scaler.get_scale() for n, v in norms(model).items()})
            scaler.step(opt)  # the fused kernel unscales: the gradients stay scaled in memory
            scaler.update()
            opt.zero_grad()
            probe.step()
    got = recorded(tmp_path / "run")
    for step, values in enumerate(expected):
        assert_same(got[step], values)


def test_a_step_whose_last_backward_was_not_measured_is_said_once(tmp_path):
    """Accumulation 3, 3, then 2 (an epoch's remainder) with clipping: the third step's last backward
    was expected to be followed by one more, so its gradients change before they are measured."""
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:
            expected = []
            for step, micro_batches in enumerate([3, 3, 2, 2, 3]):
                for micro in range(micro_batches):
                    loud_step(model, 10 * step + micro).backward()
                expected.append(norms(model))
                clip_grad_norm_(model.parameters(), max_norm=1e-3)
                opt.step()
                opt.zero_grad()
                probe.step()
    said = [w for w in caught if "changed in place" in str(w.message)]
    assert len(said) == 1 and "(step 2)" in str(said[0].message)
    run = open_run(tmp_path / "run")
    assert run.meta["gradient_capture"]["changed"]["step"] == 2
    assert [e["issue"] for e in run.events("gradient_capture")] == ["changed"]
    got = recorded(tmp_path / "run")
    for step in (0, 1, 3, 4):  # after the miss every backward is measured: exact again
        assert_same(got[step], expected[step])
    clipped = np.sqrt(sum(v * v for v in got[2].values()))
    assert clipped == pytest.approx(1e-3, rel=1e-3)  # step 2 is what it was at the step, as said


def biases_only(model: torch.nn.Module) -> torch.Tensor:
    """A loss of the biases alone: no forward of the model, and none of its sentinel parameters (each
    child's first, a weight) in the backward."""
    return LOUD * sum(p.pow(2).sum() for name, p in model.named_parameters() if name.endswith("bias"))


def test_a_backward_the_probe_cannot_see_is_said_and_read_at_the_step(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:
            for _ in range(2):
                biases_only(model).backward()
                expected = norms(model)
                opt.step()
                opt.zero_grad()
                probe.step()
    assert len([w for w in caught if "no backward through the model's outputs" in str(w.message)]) == 1
    assert_same(recorded(tmp_path / "run")[1], expected)
    assert "not_observed" in open_run(tmp_path / "run").meta["gradient_capture"]


def test_a_loss_handed_to_the_probe_marks_a_backward_outside_the_models_forward(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say: the loss was handed over
        with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:
            loss = biases_only(model)
            probe.watch_backward(loss)
            loss.backward()
            expected = norms(model)
            clip_grad_norm_(model.parameters(), 1e-3)
            opt.step()
            opt.zero_grad()
            probe.step()
    assert_same(recorded(tmp_path / "run")[0], expected)


def test_calling_the_models_parts_instead_of_the_model_is_seen(tmp_path):
    """`model.bert(...)`-style code: the model's forward never runs, its sentinel parameters are reached."""
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:
            for step in range(3):
                x, y = batch(step)
                (LOUD * torch.nn.functional.cross_entropy(model.head(model.fc1(x).relu()), y)).backward()
                expected = norms(model)
                clip_grad_norm_(model.parameters(), 1e-3)
                opt.step()
                opt.zero_grad()
                probe.step()
    assert_same(recorded(tmp_path / "run")[2], expected)


def test_autograd_grad_calls_do_not_disturb_the_measurement(tmp_path):
    """A gradient penalty (torch.autograd.grad through the model's output) ends a backward that does
    not accumulate into .grad; the step's gradients are still those of its real backward."""
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:
        for step in range(3):
            x, y = batch(step)
            x.requires_grad_(True)
            out = model(x)
            (penalty,) = torch.autograd.grad(out.sum(), x, create_graph=True)
            (LOUD * torch.nn.functional.cross_entropy(out, y) + penalty.pow(2).mean()).backward()
            expected = norms(model)
            clip_grad_norm_(model.parameters(), 1e-3)
            opt.step()
            opt.zero_grad()
            probe.step()
    assert_same(recorded(tmp_path / "run")[2], expected)
