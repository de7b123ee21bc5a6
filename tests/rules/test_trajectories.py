"""Table-driven scripted trajectories: each rule fires at the expected step and tensor, not before;
state_dict() round trips mid-trajectory give the same findings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gradprobe.rules import Finding, Severity, all_rules, find
from gradprobe.rules.activations import DeadUnits, SaturatedActivation
from gradprobe.rules.classification import ClassImbalance, Confusion
from gradprobe.rules.gradients import ExplodingGradient, LowPrecisionRange, VanishingGradient
from gradprobe.rules.initialization import PoorWeightInitialization
from gradprobe.rules.inputs import NLPSequenceRatio
from gradprobe.rules.loss import LossNotDecreasing, LossSpike, Overfit, Overtraining
from gradprobe.rules.nonfinite import NonFinite
from gradprobe.rules.system import StalledTraining
from gradprobe.rules.weights import AllZero, TensorVariance, UnchangedTensor, WeightUpdateRatio

from .records import scalars, stats_record


def feed(rule, events):
    """events: ("stats", record) | ("scalars", record) | ("inputs", args) | ("pred", args) | ("tick", args)."""
    found = []
    for kind, payload in events:
        if kind == "stats":
            found += rule.on_stats(payload)
        elif kind == "scalars":
            found += rule.on_scalars(payload)
        elif kind == "inputs":
            found += rule.on_inputs(*payload)
        elif kind == "pred":
            found += rule.on_predictions(*payload)
        elif kind == "tick":
            found += rule.on_tick(*payload)
    return found


def grads(step, **layers):
    return ("stats", stats_record(step, "grad", layers))


def vanishing():
    ok = {"l1": 1e-3 * 100}
    return [grads(s, **{"layer0.weight": {"l1": (1e-3 if s < 4 else 1e-9) * 100}, "layer3.weight": ok})
            for s in range(8)], 4, ("layer0.weight",)


def exploding():
    return [grads(s, **{"fc.weight": {"l2": 1.0 if s < 12 else 500.0}}) for s in range(15)], 12, ("fc.weight",)


def exploding_absolute():
    return [grads(s, **{"fc.weight": {"l2": 1.0 if s < 3 else 5e3}}) for s in range(5)], 3, ("fc.weight",)


def nonfinite_grad():
    def rec(s):
        return grads(s, **{"a.weight": {"nans": 3 if s >= 5 else 0}, "b.weight": {"nans": 2 if s >= 5 else 0},
                           "c.weight": {}})
    return [rec(s) for s in range(8)], 5, ("b.weight",)  # backward order: the last in model order first


def nonfinite_activation():
    def rec(s):
        return ("stats", stats_record(s, "activation", {"embed": {}, "layer0": {"infs": 1 if s >= 2 else 0},
                                                         "layer1": {"nans": 5 if s >= 2 else 0}}))
    return [rec(s) for s in range(4)], 2, ("layer0",)


def nonfinite_loss():
    return [("scalars", scalars(s, loss=1.0 if s < 6 else math.nan)) for s in range(8)], 6, ("loss",)


def low_precision():
    # Gradients around 2^-30 underflow in float16 (smallest subnormal 2^-24) at loss scale 1.
    return [grads(s, **{"w": {"exponent": -10 if s < 3 else -30}}) for s in range(5)], 3, ()


def update_ratio_large():
    return [("stats", stats_record(s, "update", {"w": {}}, ratio={"w": 1e-3 if s < 4 else 50.0})) for s in range(6)], 4, ("w",)


def update_ratio_small():
    return [("stats", stats_record(s, "update", {"w": {}}, ratio={"w": 1e-3 if s < 4 else 1e-12})) for s in range(6)], 4, ("w",)


def all_zero():
    return [("stats", stats_record(s, "weight", {"fc.weight": {"zeros": 100 if s >= 2 else 0},
                                                 "fc.bias": {"zeros": 100}})) for s in range(4)], 2, ("fc.weight",)


def unchanged():
    def rec(s):
        value = 1.0 + (0.01 * s if s < 3 else 0.03)
        return ("stats", stats_record(s, "weight", {"fc.weight": {"l2": value}}))
    return [rec(s) for s in range(9)], 6, ("fc.weight",)  # same from step 3; three more steps alike


def variance():
    return [("stats", stats_record(s, "weight", {"fc.weight": {"std": 1.0 if s < 3 else 1e3}})) for s in range(5)], 3, ("fc.weight",)


def loss_flat():
    values = [2.0 - 0.1 * s for s in range(10)] + [1.0] * 20
    return [("scalars", scalars(s, loss=v)) for s, v in enumerate(values)], 29, ("loss",)


def loss_spike():
    rng = np.random.default_rng(0)
    values = list(1.0 + 0.01 * rng.standard_normal(30))
    values[25] = 5.0
    return [("scalars", scalars(s, loss=v)) for s, v in enumerate(values)], 25, ("loss",)


def overfit():
    events = []
    for epoch in range(4):
        for s in range(5):
            events.append(("scalars", scalars(epoch * 5 + s, loss=1.0 - 0.2 * epoch)))
        train = 1.0 - 0.2 * epoch
        events.append(("scalars", scalars(epoch, "eval", loss=train * 1.05 if epoch < 2 else 1.0 + 0.2 * epoch)))
    return events, 2, ("loss",)


def overtraining():
    values = [3.0, 2.0, 1.0] + [0.99] * 10
    return [("scalars", scalars(s, loss=v)) for s, v in enumerate(values)], 7, ("loss",)


def dead_units():
    def rec(s):
        return ("stats", stats_record(s, "activation", {"encoder.act": {"zeros": 50 if s < 2 else 100},
                                                         "encoder.fc": {"zeros": 100}}))
    return [rec(s) for s in range(4)], 2, ("encoder.act",), {"module_types": {"encoder.act": "ReLU",
                                                                               "encoder.fc": "Linear"}}


def saturated():
    def rec(s):
        hist = np.zeros(130, np.int64)
        hist[(4 if s >= 3 else -2) - (-64) + 1] = 100  # |x| ~ 2^4 = 16: saturated tanh inputs
        return ("stats", stats_record(s, "activation", {"layer.tanh:input": {"hist": hist}, "layer.tanh": {}}))
    return [rec(s) for s in range(5)], 3, ("layer.tanh",)


def poor_init_constant():
    rule_shapes = {"fc.weight": (10, 10), "norm.weight": (10,)}
    events = [("stats", stats_record(0, "weight", {"fc.weight": {"std": 0.0}, "norm.weight": {"std": 0.0}}))]
    return events, 0, ("fc.weight",), {"shapes": rule_shapes}


def class_imbalance():
    labels = np.array([0] * 95 + [1] * 5)
    return [("pred", (s, "train", labels, labels)) for s in range(2)], 0, ()


def confusion():
    labels = np.array([0] * 50 + [1] * 50)
    predictions = np.array([0] * 50 + [0] * 30 + [1] * 20)
    return [("pred", (s, "eval", labels, predictions)) for s in range(2)], 0, ("1", "0")


def padding():
    return [("inputs", (s, "train", {"pad": 10 if s < 2 else 80}, 100)) for s in range(4)], 2, ("pad",)


def stalled():
    return [("tick", (1000.0 + 100 * s, 1000.0, 7, "train")) for s in range(5)], 7, ()


CASES = {
    "VanishingGradient": (VanishingGradient, vanishing),
    "ExplodingGradient(growth)": (ExplodingGradient, exploding),
    "ExplodingGradient(limit)": (ExplodingGradient, exploding_absolute),
    "NonFinite(grad)": (NonFinite, nonfinite_grad),
    "NonFinite(activation)": (NonFinite, nonfinite_activation),
    "NonFinite(loss)": (NonFinite, nonfinite_loss),
    "LowPrecisionRange": (LowPrecisionRange, low_precision),
    "WeightUpdateRatio(large)": (WeightUpdateRatio, update_ratio_large),
    "WeightUpdateRatio(small)": (WeightUpdateRatio, update_ratio_small),
    "AllZero": (AllZero, all_zero),
    "UnchangedTensor": (UnchangedTensor, unchanged),
    "TensorVariance": (TensorVariance, variance),
    "LossNotDecreasing": (LossNotDecreasing, loss_flat),
    "LossSpike": (LossSpike, loss_spike),
    "Overfit": (Overfit, overfit),
    "Overtraining": (Overtraining, overtraining),
    "DeadUnits": (DeadUnits, dead_units),
    "SaturatedActivation": (SaturatedActivation, saturated),
    "PoorWeightInitialization": (PoorWeightInitialization, poor_init_constant),
    "ClassImbalance": (ClassImbalance, class_imbalance),
    "Confusion": (Confusion, confusion),
    "NLPSequenceRatio": (NLPSequenceRatio, padding),
    "StalledTraining": (StalledTraining, stalled),
}


def make(rule_class, case):
    built = case()
    rule = rule_class(**built[3]) if len(built) > 3 else rule_class()
    if rule_class is StalledTraining:
        rule = StalledTraining(threshold=250.0)
    return rule, built[0], built[1], built[2]


@pytest.mark.parametrize("name", list(CASES))
def test_rule_fires_at_expected_step_and_tensor(name):
    rule_class, case = CASES[name]
    rule, events, step, tensors = make(rule_class, case)
    found = feed(rule, events)
    assert found, f"{name} never fired"
    first = found[0]
    assert first.step == step, f"{name} fired at step {first.step}, expected {step}: {first.message}"
    if tensors:
        assert first.tensors[:len(tensors)] == tensors, first.tensors
    assert first.code == rule_class.code and first.message
    # Nothing before the expected step: the prefix alone is silent.
    fresh, events, step, _ = make(rule_class, case)
    prefix = [e for e in events if _step_of(e) < step]
    assert feed(fresh, prefix) == []


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_round_trip_gives_the_same_findings(name):
    rule_class, case = CASES[name]
    rule, events, _, _ = make(rule_class, case)
    whole = feed(rule, events)
    half = len(events) // 2
    first, _, _, _ = make(rule_class, case)
    before = feed(first, events[:half])
    state = json.loads(json.dumps(first.state_dict()))  # the state is JSON-ready
    second, _, _, _ = make(rule_class, case)
    second.load_state_dict(state)
    after = feed(second, events[half:])
    assert [(f.code, f.step, f.tensors) for f in before + after] == [(f.code, f.step, f.tensors) for f in whole]


def _step_of(event):
    kind, payload = event
    return payload[0] if kind in ("inputs", "pred", "tick") else payload.step


def test_every_rule_has_a_code_docstring_and_typed_defaults():
    codes = [rule.code for rule in all_rules()]
    assert len(codes) == len(set(codes)) and all(c.startswith("GP") for c in codes)
    for rule in all_rules():
        doc = rule.__doc__ or ""
        assert "Why" in doc and "Try" in doc, f"{rule.__name__} docstring lacks why/try"
        rule()  # every parameter has a default


def test_find_and_severity_parsing():
    assert find("gp101") is VanishingGradient and find("vanishinggradient") is VanishingGradient
    with pytest.raises(ValueError, match="unknown rule 'GP999'"):
        find("GP999")
    assert Severity.parse("error") == Severity.ERROR
    with pytest.raises(ValueError, match="unknown severity"):
        Severity.parse("fatal")
    assert VanishingGradient(severity="warning").finding(0, "train", "x").severity == Severity.WARNING


def test_rules_never_raise_to_report():
    """Every rule, fed hostile records through every hook, returns a list of findings (never None,
    never an exception), and a non-finite loss is reported as data."""
    nan = float("nan")
    hostile = [
        ("scalars", scalars(0, loss=float("inf"))),
        ("scalars", scalars(1, loss=nan, lr=nan)),
        ("scalars", scalars(2)),
        ("stats", stats_record(3, "grad", {"w": {"numel": 0, "finite": 0, "l1": 0.0, "l2": 0.0, "min": nan,
                                                  "max": nan, "mean": nan, "std": nan}})),
        ("stats", stats_record(4, "weight", {"w": {"nans": 100, "finite": 0, "l2": nan, "std": nan}})),
        ("stats", stats_record(5, "update", {"w": {"infs": 3}}, ratio={"w": nan})),
        ("stats", stats_record(6, "activation", {"relu:input": {"zeros": 100}})),
        ("stats", stats_record(7, "grad", {})),
        ("inputs", (8, "train", {"pad": 0}, 0)),
        ("pred", (9, "train", np.array([], np.int64), np.array([], np.int64))),
        ("tick", (1e9, None, 9, "train")),
    ]
    for rule_type in all_rules():
        rule = rule_type()
        for kind, payload in hostile:
            if kind == "stats":
                found = rule.on_stats(payload)
            elif kind == "scalars":
                found = rule.on_scalars(payload)
            elif kind == "inputs":
                found = rule.on_inputs(*payload)
            elif kind == "pred":
                found = rule.on_predictions(*payload)
            else:
                found = rule.on_tick(*payload)
            assert isinstance(found, list) and all(isinstance(f, Finding) for f in found), (rule.name, kind)
    reported = NonFinite().on_scalars(scalars(0, loss=float("inf")))
    assert [f.code for f in reported] == ["GP100"] and reported[0].tensors == ("loss",)
