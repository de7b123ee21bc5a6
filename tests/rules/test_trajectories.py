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
from gradprobe.rules.divergence import Divergence
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
    # Vanished from step 4 (1e-6 of its peer layer); reported after `patience` (2) such steps.
    return [grads(s, **{"layer0.weight": {"l1": (1e-3 if s < 4 else 1e-9) * 100}, "layer3.weight": ok})
            for s in range(8)], 5, ("layer0.weight",)


def vanishing_against_own_history():
    # Every layer falls 1e4-fold from step 12 on while the loss stays high: no peer is larger.
    events = []
    for s in range(16):
        level = 1e-2 if s < 12 else 1e-6
        events.append(grads(s, **{"a.weight": {"l1": level * 100}, "b.weight": {"l1": 2 * level * 100}}))
        events.append(("scalars", scalars(s, loss=2.0)))
    return events, 13, ("a.weight", "b.weight")


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
    # Falls for 30 steps, then flat from step 30. Step 67's 50-step window (18-67) is the first whose
    # older half (18-42) has a median on the plateau, and more than half its pairwise slopes are 0.
    values = [2.0 - 0.03 * s for s in range(30)] + [1.1] * 60
    return [("scalars", scalars(s, loss=v)) for s, v in enumerate(values)], 67, ("loss",)


def loss_converged():
    # Falls by orders of magnitude to ~0, then flat there: converged, not "not decreasing".
    values = [2.0 * 0.8 ** s for s in range(40)] + [1e-6] * 60
    return [("scalars", scalars(s, loss=v)) for s, v in enumerate(values)], None, ()


def vanishing_converged():
    # All gradients fall 1e5-fold together as the loss goes to ~0: reported once, as info.
    events = []
    for s in range(16):
        level = 1e-2 if s < 12 else 1e-7
        events.append(grads(s, **{"a.weight": {"l1": level * 100}}))
        events.append(("scalars", scalars(s, loss=2.0 if s < 12 else 1e-5)))
    return events, 13, ("a.weight",)


def vanishing_but_moving():
    # Tiny gradients under Adam: the weights still move 1e-3 of their norm per step: learning, not vanished.
    events = []
    for s in range(16):
        events.append(grads(s, **{"emb.weight": {"l1": 1e-12 * 5, "zeros": 95}, "fc.weight": {"l1": 1e-2 * 100}}))
        events.append(("stats", stats_record(s, "update", {"emb.weight": {}, "fc.weight": {}},
                                             ratio={"emb.weight": 1e-3, "fc.weight": 1e-3})))
        events.append(("scalars", scalars(s, loss=2.0)))
    return events, None, ()


def embedding_rows():
    # 95% exact zeros (rows of tokens not in the batch), the rest at the scale of the other layers.
    events = []
    for s in range(16):
        events.append(grads(s, **{"emb.weight": {"l1": 1e-2 * 5, "zeros": 95}, "fc.weight": {"l1": 1e-2 * 100}}))
        events.append(("scalars", scalars(s, loss=2.0)))
    return events, None, ()


def training_only():
    # A memorising run without evaluations: the overfitting rules have nothing to judge.
    return [("scalars", scalars(s, loss=2.0 * 0.5 ** s)) for s in range(60)], None, ()


def noisy_validation():
    # Validation loss around its best with noise (one evaluation 15% up, the next back): no rising trend.
    validation = [1.0, 0.8, 0.7, 0.65, 0.76, 0.66, 0.75, 0.64, 0.74, 0.63]
    events = []
    for epoch, value in enumerate(validation):
        events += [("scalars", scalars(epoch * 5 + s, loss=1.0 / (1 + epoch))) for s in range(5)]
        events.append(("scalars", scalars(epoch, "eval", loss=value)))
    return events, None, ()


SILENT = {"Overfit(no evaluations)": (Overfit, training_only),
          "Overtraining(no evaluations)": (Overtraining, training_only),
          "Overfit(noisy validation)": (Overfit, noisy_validation),
          "LossNotDecreasing(converged)": (LossNotDecreasing, loss_converged),
          "VanishingGradient(moving under Adam)": (VanishingGradient, vanishing_but_moving),
          "VanishingGradient(embedding rows)": (VanishingGradient, embedding_rows)}


@pytest.mark.parametrize("name", list(SILENT))
def test_rule_stays_silent_on_healthy_trajectory(name):
    rule_class, case = SILENT[name]
    events = case()[0]
    assert feed(rule_class(), events) == []


def test_vanishing_while_the_loss_is_zero_is_reported_as_convergence():
    events, step, tensors = vanishing_converged()
    found = feed(VanishingGradient(), events)
    assert [(f.step, f.tensors, f.severity) for f in found] == [(step, tensors, Severity.INFO)]
    assert "memorised or converged" in found[0].message and "not a vanishing-gradient problem" in found[0].message


def loss_spike():
    rng = np.random.default_rng(0)
    values = list(1.0 + 0.01 * rng.standard_normal(30))
    values[25] = 5.0
    return [("scalars", scalars(s, loss=v)) for s, v in enumerate(values)], 25, ("loss",)


def overfit():
    # Validation loss best at evaluation 2 (0.8), then rising 0.9, 1.0, 1.1 while training keeps falling:
    # three evaluations worse than the best by > 10%, the third (evaluation 5) reports.
    validation = [1.2, 1.0, 0.8, 0.9, 1.0, 1.1, 1.2]
    events = []
    for epoch, value in enumerate(validation):
        for s in range(5):
            events.append(("scalars", scalars(epoch * 5 + s, loss=1.0 / (1 + epoch) + 0.01 * (s % 2))))
        events.append(("scalars", scalars(epoch, "eval", loss=value)))
    return events, 5, ("loss",)


def overfit_on_accuracy():
    # Accuracy best at evaluation 1 (0.9), then falling to 0.8, 0.75, 0.7 (no validation loss given).
    accuracy = [0.8, 0.9, 0.8, 0.75, 0.7]
    events = []
    for epoch, value in enumerate(accuracy):
        for s in range(5):
            events.append(("scalars", scalars(epoch * 5 + s, loss=1.0 / (1 + epoch))))
        events.append(("scalars", scalars(epoch, "eval", **{"metric/accuracy": value})))
    return events, 4, ("accuracy",)


def overtraining():
    values = [3.0, 2.0, 1.0] + [0.995] * 8
    return [("scalars", scalars(s, "eval", loss=v)) for s, v in enumerate(values)], 7, ("loss",)


def divergence():
    rng = np.random.default_rng(0)
    values = list(2.0 - 0.01 * np.arange(30) + 0.05 * rng.standard_normal(30))
    values += [6.0, 30.0, 200.0]  # onset at step 30; the second step above 3x confirms
    return [("scalars", scalars(s, loss=v)) for s, v in enumerate(values)], 31, ("loss",)


def exploding_total():
    # Every layer's norm grows 20x from step 12 (below the 100x per-layer growth): the total confirms at 13.
    return [grads(s, **{f"l{i}.weight": {"l2": 1.0 if s < 12 else 20.0} for i in range(3)}) for s in range(15)], 13, ()


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
    "VanishingGradient(own history)": (VanishingGradient, vanishing_against_own_history),
    "ExplodingGradient(growth)": (ExplodingGradient, exploding),
    "ExplodingGradient(limit)": (ExplodingGradient, exploding_absolute),
    "ExplodingGradient(total)": (ExplodingGradient, exploding_total),
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
    "Overfit(accuracy)": (Overfit, overfit_on_accuracy),
    "Divergence": (Divergence, divergence),
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


def as_records(rule, events):
    """The events as the records the engine would give this rule (Rule.reads), in order."""
    from gradprobe.records import InputRecord, PredictionRecord

    records = []
    for kind, payload in events:
        if kind in ("stats", "scalars"):
            records.append(payload)
        elif kind == "inputs":
            records.append(InputRecord(*payload))
        elif kind == "pred":
            records.append(PredictionRecord(*payload))
    return [r for r in records if rule.reads(r)]


@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize("name", list(CASES))
def test_batches_give_the_findings_of_one_record_at_a_time(name, chunk):
    """Rule.on_records (what the consumer and replay call, vectorised by the rules on every step's
    path) against one hook call per record: the same findings, message for message."""
    rule_class, case = CASES[name]
    rule, events, _, _ = make(rule_class, case)
    if any(kind == "tick" for kind, _ in events):
        pytest.skip("ticks are not records")
    one_by_one = feed(rule, events)
    batched_rule, events, _, _ = make(rule_class, case)
    records = as_records(batched_rule, events)
    found = []
    for start in range(0, len(records), chunk):
        found += batched_rule.on_records(records[start:start + chunk])
    assert [(f.code, f.step, f.mode, f.tensors, f.message) for f in found] == \
        [(f.code, f.step, f.mode, f.tensors, f.message) for f in one_by_one]


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


def test_initialisation_is_judged_against_the_schemes_real_models_use():
    shapes = {"wte.weight": (50257, 768), "h.0.attn.c_proj.weight": (768, 768), "h.0.mlp.c_fc.weight": (768, 3072),
              "fc.weight": (64, 64), "big.weight": (64, 64)}
    rule = PoorWeightInitialization(shapes=shapes)
    record = stats_record(0, "weight", {"wte.weight": {"std": 1.0},  # nn.Embedding's N(0, 1)
                                        "h.0.attn.c_proj.weight": {"std": 0.02 / math.sqrt(2 * 48)},  # GPT-2 residual
                                        "h.0.mlp.c_fc.weight": {"std": 0.02},
                                        "fc.weight": {"std": 1e-4}, "big.weight": {"std": 30.0}})
    found = rule.on_stats(record)
    assert [(f.tensors, f.severity) for f in found] == [(("fc.weight", "big.weight"), Severity.WARNING)]
    assert "nearest" in found[0].message and "Next:" in found[0].message


def test_masked_softmax_inputs_are_not_saturation_unless_asked():
    hist = np.zeros(130, np.int64)
    hist[13 - (-64) + 1] = 100  # |x| ~ 2^13: attention logits with a mask of -10000
    record = stats_record(0, "activation", {"attn.softmax:input": {"hist": hist}, "attn.softmax": {}})
    types = {"attn.softmax": "Softmax"}
    assert SaturatedActivation(module_types=types).on_stats(record) == []
    asked = SaturatedActivation(module_types=types, types=("Softmax",)).on_stats(record)
    assert [f.tensors for f in asked] == [("attn.softmax",)]


def test_all_nan_gradients_are_not_called_vanished():
    """All-NaN gradients are NonFinite's finding; their finite sums are 0 but nothing vanished."""
    nan = float("nan")
    rule = VanishingGradient()
    found = []
    for step in range(12):
        bad = {"nans": 100, "finite": 0, "l1": 0.0, "l2": 0.0, "mean": nan, "std": nan, "min": nan, "max": nan}
        found += rule.on_stats(stats_record(step, "grad", {"a.weight": dict(bad), "b.weight": dict(bad)}))
    assert found == []
