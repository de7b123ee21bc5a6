"""The NaN/Inf origin on every step (probe/nonfinite_origin.py, rules/nonfinite.py): planted NaNs
in a forward and Infs in a backward on steps without activation capture, named by module and
direction at the step they happen (from a replay of the broken step); healthy steps record nothing
extra and put no hook below the model's root; the hooks go with the probe."""

from __future__ import annotations

import pytest
import torch

import gradprobe

STEPS = 6
BAD_STEP = 3  # activation capture (every 10 steps) is due at step 0 only: step 3 has none


class BadAt(torch.nn.Module):
    """Parameterless; while armed (the training loop arms it for one micro-batch of one step, through
    `tick`) it breaks its forward (NaN output) or its backward (sqrt at exact zeros: finite forward,
    infinite derivative). A function of its input and that flag, as the origin's replay needs."""

    def __init__(self, at: int, where: str, micro: int = 0) -> None:
        super().__init__()
        self.at, self.where, self.micro, self.armed = at, where, micro, False

    def tick(self, step: int, micro: int) -> None:
        self.armed = (step, micro) == (self.at, self.micro)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.armed:
            return torch.sqrt(x.abs() + 1.0)
        if self.where == "forward":
            return x * float("nan")
        return torch.sqrt(x * 0.0)


def model_with(bad: torch.nn.Module | None) -> torch.nn.Sequential:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Linear(6, 16), torch.nn.Tanh()]
    if bad is not None:
        layers.append(bad)
    layers += [torch.nn.Linear(16, 16), torch.nn.GELU(), torch.nn.Linear(16, 3)]
    return torch.nn.Sequential(*layers)


def train(model: torch.nn.Module, out_dir, *, micro_batches: int = 1, **config) -> gradprobe.Run:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with gradprobe.Probe(model, optimizer, out_dir=out_dir, config=gradprobe.ProbeConfig(**config)) as probe:
        for step in range(STEPS):
            for micro in range(micro_batches):
                for module in model.modules():
                    if isinstance(module, BadAt):
                        module.tick(step, micro)
                g = torch.Generator().manual_seed(step * 10 + micro)
                x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
                torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
            with torch.no_grad():
                for p in model.parameters():  # the run goes on healthy after the planted step
                    p.nan_to_num_(0.0, 0.0, 0.0)
            probe.step(loss=1.0)
    return gradprobe.open_run(out_dir)


def nonfinite_findings(run: gradprobe.Run) -> list[dict]:
    return [e for e in run.events("finding") if e["rule"] == "NonFinite"]


def test_a_nan_in_a_forward_is_named_at_its_module_and_step(tmp_path):
    run = train(model_with(BadAt(BAD_STEP, "forward")), tmp_path / "run")
    first = nonfinite_findings(run)[0]
    assert (first["step"], first["tensors"]) == (BAD_STEP, ["2"])
    assert "the output of 2" in first["message"]
    rows = run.stats("activation")
    bad_rows = rows[rows["step"] == BAD_STEP]
    assert list(bad_rows["tensor"][:3]) == ["0", "1", "2"]  # execution order, finite before the origin
    assert (bad_rows.set_index("tensor")["nans"][["0", "1"]] == 0).all() and bad_rows.set_index("tensor")["nans"]["2"] > 0


def test_an_inf_made_by_a_backward_is_named_at_its_module_and_step(tmp_path):
    run = train(model_with(BadAt(BAD_STEP, "backward")), tmp_path / "run")
    first = nonfinite_findings(run)[0]
    assert (first["step"], first["tensors"]) == (BAD_STEP, ["2"])
    assert "backward of 2" in first["message"] and "the forward was finite" in first["message"]
    grads = run.stats("activation_grad")
    assert set(grads["step"]) == {BAD_STEP}  # measured only on the step whose gradients broke
    by_name = grads.set_index("tensor")
    assert by_name["nans"]["2"] + by_name["infs"]["2"] == 0  # its output's gradient was finite
    assert by_name["nans"]["2:input"] + by_name["infs"]["2:input"] > 0


def test_with_accumulation_the_last_micro_batch_backward_is_located(tmp_path):
    model = model_with(BadAt(BAD_STEP, "backward", micro=1))  # the second micro-batch of step 3
    first = nonfinite_findings(train(model, tmp_path / "run", micro_batches=2))[0]
    assert (first["step"], first["tensors"]) == (BAD_STEP, ["2"])


def test_healthy_steps_record_no_origin_rows_and_no_finding(tmp_path):
    run = train(model_with(None), tmp_path / "run")
    assert nonfinite_findings(run) == []
    assert len(run.stats("activation_grad")) == 0
    assert set(run.stats("activation")["step"]) == {0}  # only the scheduled capture


def test_switched_off_it_falls_back_to_the_parameter_gradient(tmp_path):
    run = train(model_with(BadAt(BAD_STEP, "backward")), tmp_path / "run", nonfinite_origin=False)
    first = nonfinite_findings(run)[0]
    assert first["step"] == BAD_STEP and first["tensors"][0].startswith("0.")  # first in backward order
    assert len(run.stats("activation_grad")) == 0


def test_a_nan_in_a_no_grad_forward_is_not_tracked_and_breaks_nothing(tmp_path):
    bad = BadAt(1, "forward")
    model = model_with(bad)  # evaluation step 1: no activation capture due
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run") as probe:
        probe.set_mode("eval")
        for step in range(2):
            bad.tick(step, 0)
            with torch.no_grad():
                out = model(torch.randn(4, 6))
            probe.step(loss=out.sum().item())
        assert torch.isnan(out).all()
    run = gradprobe.open_run(tmp_path / "run")
    assert [(f["step"], f["tensors"]) for f in nonfinite_findings(run)] == [(1, ["loss"])]  # the loss tells
    assert set(run.stats("activation")["step"]) == {0}


def test_close_takes_every_origin_hook_out(tmp_path):
    model = model_with(BadAt(99, "forward"))
    before = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    train(model, tmp_path / "run")
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()] == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_origin_needs_no_sync_and_is_kept_only_when_non_finite(tmp_path):
    model = model_with(BadAt(BAD_STEP, "backward")).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run") as probe:
        for _ in range(STEPS):
            x, y = torch.randn(8, 6, device="cuda"), torch.randint(0, 3, (8,), device="cuda")
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
                probe.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            with torch.no_grad():
                for p in model.parameters():
                    p.nan_to_num_(0.0, 0.0, 0.0)
    run = gradprobe.open_run(tmp_path / "run")
    first = nonfinite_findings(run)[0]
    assert (first["step"], first["tensors"]) == (BAD_STEP, ["2"])
    assert set(run.stats("activation_grad")["step"]) == {BAD_STEP}
    assert set(run.stats("activation")["step"]) == {0}


def test_healthy_steps_hook_nothing_below_the_root(tmp_path):
    model = model_with(None)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run") as probe:
        for step in range(3):
            x = torch.randn(8, 6)
            out = model(x)
            below = [m for m in model.modules() if m is not model and (m._forward_hooks or m._forward_pre_hooks)]
            assert below == [] or step == 0  # step 0: the scheduled activation capture
            torch.nn.functional.cross_entropy(out, torch.zeros(8, dtype=torch.long)).backward()
            optimizer.step()
            optimizer.zero_grad()
            probe.step()


class NormedBad(torch.nn.Module):
    """BatchNorm (running statistics, which a replay must not move twice) and dropout (random masks,
    which a replay must draw again identically) before a module that breaks at one step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin, self.norm, self.drop = torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.Dropout(0.5)
        self.bad, self.head = BadAt(BAD_STEP, "backward"), torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bad(self.drop(self.norm(self.lin(x)))))


def test_a_replay_leaves_running_statistics_and_the_random_stream_as_they_were(tmp_path):
    outcomes = []
    for origin in (True, False):
        model = NormedBad()
        torch.manual_seed(1)
        run = train(model, tmp_path / f"run{origin}", nonfinite_origin=origin)
        outcomes.append((model.norm.running_mean.clone(), model.norm.num_batches_tracked.item(), torch.rand(3),
                         nonfinite_findings(run)[0]))
    (mean_a, batches_a, rand_a, found_a), (mean_b, batches_b, rand_b, found_b) = outcomes
    torch.testing.assert_close(mean_a, mean_b, rtol=0, atol=0)
    assert batches_a == batches_b == STEPS
    torch.testing.assert_close(rand_a, rand_b, rtol=0, atol=0)  # the replay drew from a forked stream
    assert (found_a["step"], found_a["tensors"]) == (BAD_STEP, ["bad"])  # the replay saw the same dropout masks
    assert found_b["tensors"][0] != "bad"  # without the origin: the first parameter gradient in backward order
