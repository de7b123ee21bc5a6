"""The rules on every step's path work on many steps at once (Rule.on_records, as the consumer and a
stored run's replay call them); the oracle is one hook call per record: the same findings, message for
message, and the same state afterwards, on random trajectories with everything a rule branches on
(non-finite values, absent tensors, zeros, spikes, collapses, updates that stop, loss plateaus) and
batches of every size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradprobe.records import ScalarRecord, StatsRecord
from gradprobe.rules import all_rules, default
from gradprobe.rules.base import _call
from gradprobe.stats import FIELDS, HIST_BINS, Stats

NAMES = [f"layer{i}.weight" for i in range(5)] + ["layer0.bias", "embed.weight"]


def trajectory(seed: int, steps: int = 80) -> list:
    rng = np.random.default_rng(seed)
    names = list(NAMES)  # one object for every record, as live
    n = len(names)
    scale = rng.uniform(0.1, 10, n)
    weights = rng.uniform(1, 5, n)
    frozen_from = rng.integers(10, steps, n)
    records = []
    for step in range(steps):
        for kind in ("grad", "weight", "update"):
            if kind != "grad" and step % 3:
                continue
            numel = np.full(n, 1000)
            level = scale * (1e-6 if step > 50 and rng.random() < 0.5 else 1.0) * rng.uniform(0.5, 2.0, n)
            if kind == "grad" and rng.random() < 0.05:
                level[rng.integers(n)] *= 1e4  # a spike
            if kind == "weight":
                level = np.where(step >= frozen_from, weights, weights * rng.uniform(0.9, 1.1, n))
            table = np.zeros((n, len(FIELDS)))
            column = {f: i for i, f in enumerate(FIELDS)}
            table[:, column["numel"]] = numel
            table[:, column["l2"]] = level
            table[:, column["l1"]] = level * 30
            table[:, column["std"]] = level / 30
            table[:, column["mean"]] = level / 100
            table[:, column["min"]], table[:, column["max"]] = -level, level
            zeros = np.where(rng.random(n) < 0.05, numel, rng.integers(0, 10, n))
            nans = np.where(rng.random(n) < 0.02, rng.integers(1, 5, n), 0)
            table[:, column["zeros"]] = zeros
            table[:, column["nans"]] = nans
            table[:, column["finite"]] = numel - nans
            if rng.random() < 0.03:
                table[rng.integers(n), column["l2"]] = np.nan
            hist = np.zeros((n, HIST_BINS), np.int64)
            hist[:, 60] = numel - zeros - nans
            present = rng.random(n) > (0.1 if step % 7 == 0 else 0.0)
            ratio = rng.uniform(0, 1e-2, n) * (step < frozen_from) if kind == "update" else None
            records.append(StatsRecord(step, "train", kind, names, present, Stats.from_table(table, hist), ratio))
        loss = 2.0 * np.exp(-step / 10) if step < 20 else 0.4 + 0.01 * rng.standard_normal()  # then a plateau
        if step == 60:
            loss = float("nan")
        records.append(ScalarRecord(step, "train", {"loss": loss, "lr": 1e-3}, float(step)))
        if step % 10 == 9:
            records.append(ScalarRecord(step, "eval", {"loss": loss * (1 + step / 40)}, float(step) + 0.5))
    return records


def findings(found) -> list[tuple]:
    return [(f.code, f.step, f.mode, f.tensors, f.message) for f in found]


def test_the_trajectories_make_the_rules_on_every_steps_path_fire():
    fired = set()
    for seed in range(6):
        for rule in [r() for r in all_rules()]:
            for record in trajectory(seed):
                if rule.reads(record):
                    fired |= {f.rule for f in _call(rule, record)}
    assert {"NonFinite", "VanishingGradient", "ExplodingGradient", "AllZero", "UnchangedTensor",
            "WeightUpdateRatio", "LossNotDecreasing"} <= fired, fired


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk", [2, 7, 1000])
def test_every_rule_gives_the_same_findings_and_state_in_batches(seed, chunk):
    records = trajectory(seed)
    for one, batched in zip(default() + [r() for r in all_rules()], default() + [r() for r in all_rules()]):
        expected = []
        for record in records:
            if one.reads(record):
                expected += _call(one, record)
        mine = [r for r in records if batched.reads(r)]
        found = []
        for start in range(0, len(mine), chunk):
            found += batched.on_records(mine[start:start + chunk])
        assert findings(found) == findings(expected), one.name
        assert json.dumps(batched.state_dict(), sort_keys=True, default=str) == \
            json.dumps(one.state_dict(), sort_keys=True, default=str), one.name
