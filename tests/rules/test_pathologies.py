"""Real tiny trainings with planted pathologies: each detected by the right rule, with the right layer."""

from __future__ import annotations

import torch

from gradprobe import Probe
from gradprobe.rules import Severity
from gradprobe.rules.activations import DeadUnits
from gradprobe.rules.gradients import ExplodingGradient, VanishingGradient
from gradprobe.rules.initialization import PoorWeightInitialization
from gradprobe.rules.loss import LossNotDecreasing, Overfit
from gradprobe.rules.nonfinite import NonFinite
from gradprobe.rules.weights import AllZero, UnchangedTensor


def data(seed: int, n: int = 64, features: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return x, (x[:, :4].sum(1) > 0).long()


def train(tmp_path, model, rules, steps=20, lr=0.1, config="default", optimizer=None, eval_every=0, eval_data=None,
          train_batches=None):
    opt = optimizer or torch.optim.SGD(model.parameters(), lr=lr)
    with Probe(model, opt, out_dir=tmp_path / "run", config=config, rules=rules) as probe:
        for step in range(steps):
            x, y = train_batches[step % len(train_batches)] if train_batches else data(step)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)
            if eval_every and (step + 1) % eval_every == 0:
                probe.set_mode("eval")
                with torch.no_grad():
                    vx, vy = eval_data
                    probe.step(loss=torch.nn.functional.cross_entropy(model(vx), vy))
                probe.set_mode("train")
        probe.flush()
        return probe.findings


def by_code(findings, code):
    return [f for f in findings if f.code == code]


def test_deep_sigmoid_mlp_with_tiny_init_vanishes(tmp_path):
    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        linear = torch.nn.Linear(16, 16)
        torch.nn.init.normal_(linear.weight, std=0.01)
        layers += [linear, torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(16, 2))
    found = by_code(train(tmp_path, model, [VanishingGradient()], steps=3), "GP101")
    assert found and found[0].step == 1  # vanished at step 0; confirmed by the second step (patience 2)
    assert found[0].severity == Severity.ERROR and "vanished" in found[0].message
    assert "0.weight" in found[0].tensors and "18.weight" not in found[0].tensors  # early layers, not the last


def test_vanishing_rule_survives_a_run_whose_gradients_are_all_zero(tmp_path):
    """Its first record is an update (no grad row has a non-zero entry): it once indexed its own
    state before growing it, failed and was skipped. AllZero owns this run; VanishingGradient is
    silent and keeps running."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    torch.nn.init.constant_(model[0].bias, -10.0)  # every ReLU dead: no gradient reaches any weight
    torch.nn.init.zeros_(model[2].weight)
    torch.nn.init.zeros_(model[2].bias)
    with torch.no_grad():
        model[2].bias.requires_grad_(False)
    found = train(tmp_path, model, [VanishingGradient(), AllZero()], steps=12)
    assert by_code(found, "GP111") and not by_code(found, "GP101")
    events = (tmp_path / "run" / "events.jsonl").read_text()
    assert "rule_error" not in events


def test_huge_learning_rate_explodes_then_nan_with_origin(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 2))
    found = train(tmp_path, model, [ExplodingGradient(), NonFinite()], steps=30, lr=1e4, config="full")
    exploding, nonfinite = by_code(found, "GP102"), by_code(found, "GP100")
    assert exploding and nonfinite
    assert exploding[0].step <= nonfinite[0].step
    assert any("first appeared" in f.message or "loss is" in f.message for f in nonfinite)


def test_planted_nan_in_one_module_names_it(tmp_path):
    class Poisoned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(32, 32)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            out = self.linear(x)
            if self.calls == 4:  # the 4th step's forward
                out = out * torch.tensor(float("nan"))
            return out

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), Poisoned(), torch.nn.Tanh(),
                                torch.nn.Linear(32, 2))
    found = by_code(train(tmp_path, model, [NonFinite()], steps=6, config="full"), "GP100")
    activation = [f for f in found if "output of" in f.message]
    assert activation and activation[0].step == 3 and activation[0].tensors == ("2",)  # not the finite 2.linear
    assert "inputs were finite" in activation[0].message


def test_all_zero_and_constant_initialisation(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    torch.nn.init.zeros_(model[0].weight)
    torch.nn.init.constant_(model[2].weight, 0.5)
    found = train(tmp_path, model, [AllZero(), PoorWeightInitialization()], steps=3)
    zero = by_code(found, "GP111")
    weights = [f for f in zero if f.message.startswith("weight of")]
    assert weights and "0.weight" in weights[0].tensors and weights[0].severity == Severity.WARNING  # can be intended
    init = [f for f in by_code(found, "GP140") if "identical" in f.message]
    # A non-zero constant is an error; the all-zero matrix is AllZero's, not reported twice.
    assert init and init[0].step == 0 and set(init[0].tensors) == {"2.weight"} and init[0].severity == Severity.ERROR


def test_relu_net_pushed_dead_by_negative_bias(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    torch.nn.init.constant_(model[0].bias, -50.0)
    found = by_code(train(tmp_path, model, [DeadUnits()], steps=2, config="full"), "GP130")
    assert found and found[0].tensors == ("1",) and found[0].step == 0


def test_overfitting_on_tiny_training_set(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 256), torch.nn.ReLU(), torch.nn.Linear(256, 2))
    g = torch.Generator().manual_seed(1)
    tiny = [(torch.randn(8, 16, generator=g), torch.randint(0, 2, (8,), generator=g))]  # labels are noise
    validation = (torch.randn(256, 16, generator=g), torch.randint(0, 2, (256,), generator=g))
    found = train(tmp_path, model, [Overfit()], steps=60, lr=0.1, eval_every=10, eval_data=validation,
                  train_batches=tiny, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2))
    overfit = by_code(found, "GP122")
    assert overfit and overfit[0].mode == "eval" and overfit[0].evidence["gap"] > 0.1


def test_frozen_model_unchanged_and_loss_flat(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    found = train(tmp_path, model, [UnchangedTensor(), LossNotDecreasing(num_steps=5)], steps=12, lr=0.0)
    unchanged, flat = by_code(found, "GP112"), by_code(found, "GP120")
    assert unchanged and unchanged[0].step == 3 and set(unchanged[0].tensors) >= {"0.weight", "2.weight"}
    assert flat and 9 <= flat[0].step <= 11  # the first full pair of 5-step windows, give or take batch noise


def test_healthy_training_fires_no_default_rule(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    found = train(tmp_path, model, None, steps=40, lr=0.05, config="full")
    assert found == [], [f.message for f in found]
