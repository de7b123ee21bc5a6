"""Schedules and configuration: presets, files, and errors that name the bad key."""

from __future__ import annotations

import json

import pytest

from gradprobe import ProbeConfig, Schedule
from gradprobe.probe.config import resolve_config


@pytest.mark.parametrize("schedule, due", [
    (Schedule(every=3), [0, 3, 6, 9]),
    (Schedule(every=4, offset=1), [1, 5, 9]),
    (Schedule(every=0, steps=(2, 7)), [2, 7]),
    (Schedule(every=0, ranges=((3, 5),)), [3, 4, 5]),
    (Schedule(every=5, dense_until=3), [0, 1, 2, 5]),
    (Schedule(every=0, dense_until=6, dense_every=2), [0, 2, 4]),
    (Schedule.never(), []),
])
def test_schedule_due_steps(schedule, due):
    assert [s for s in range(10) if schedule.due(s)] == due


def test_schedule_from_values_and_errors():
    assert Schedule.from_value(5) == Schedule(every=5)
    assert Schedule.from_value([1, 2]).steps == (1, 2)
    assert Schedule.from_value({"every": 10, "dense_until": 50}).dense_until == 50
    with pytest.raises(ValueError, match="unknown key 'evry'"):
        Schedule.from_value({"evry": 3})
    with pytest.raises(ValueError, match="stop < start"):
        Schedule(ranges=((5, 1),))
    with pytest.raises(ValueError, match="got a bool"):
        Schedule.from_value(True)


def measurements(config: ProbeConfig, steps: int = 100) -> dict[str, int]:
    """Per mode: how many (collection, step) measurements the preset makes in `steps` steps, and
    how many of them carry histograms: what the preset costs."""
    cost = {}
    for mode in ("train", "eval"):
        due = [(c, s) for c in config.collections for s in range(steps) if c.due(mode, s)]
        cost[mode] = len(due)
        cost[f"{mode} histograms"] = sum(c.histogram for c, _ in due)
    return cost


def test_presets_grow_in_cost():
    minimal, default, full = (measurements(ProbeConfig.from_preset(p)) for p in ("minimal", "default", "full"))
    for key in minimal:
        assert minimal[key] <= default[key] <= full[key], key
    assert minimal["train"] < default["train"] < full["train"]
    assert minimal["eval"] < full["eval"] and default["eval"] < full["eval"]
    kinds = {p: {c.kind for c in ProbeConfig.from_preset(p).collections} for p in ("minimal", "default", "full")}
    assert kinds["minimal"] == {"grad"} and kinds["minimal"] < kinds["default"] < kinds["full"]
    assert all(resolve_config(p).preset == p for p in kinds)


def test_backends_the_probe_cannot_use_are_refused_by_name():
    with pytest.raises(ValueError, match="backend 'torch' cannot run the probe"):
        ProbeConfig(backend="torch")
    with pytest.raises(ValueError, match="backend 'tpu' cannot run the probe"):
        ProbeConfig.from_dict({"backend": "tpu"})
    assert ProbeConfig.from_dict({"backend": "cpu"}).backend == "cpu"
    with pytest.raises(ValueError, match="max_queued_items"):
        ProbeConfig(max_queued_items=0)


def test_unknown_keys_are_errors_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="config: unknown key 'colections'"):
        ProbeConfig.from_dict({"colections": {}})
    with pytest.raises(ValueError, match="collections.gradients: unknown key 'evry'"):
        ProbeConfig.from_dict({"collections": {"gradients": {"evry": 2}}})
    with pytest.raises(ValueError, match="store: unknown key 'flush'"):
        ProbeConfig.from_dict({"store": {"flush": 1}})
    with pytest.raises(ValueError, match="needs a 'kind'"):
        ProbeConfig.from_dict({"collections": {"mine": {"include": ["fc"]}}})
    with pytest.raises(ValueError, match="unknown kind 'grads'"):
        ProbeConfig.from_dict({"collections": {"mine": {"kind": "grads"}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: default\nbackend_name: cpu\n")
    with pytest.raises(ValueError, match="bad.yaml: config: unknown key 'backend_name'"):
        ProbeConfig.from_file(bad)


def test_config_file_overrides_and_disables(tmp_path):
    path = tmp_path / "probe.yaml"
    path.write_text(
        "preset: default\n"
        "collections:\n"
        "  gradients: {schedule: {every: 5, dense_until: 10}, histogram: false}\n"
        "  activations: {enabled: false}\n"
        "  attention: {kind: activation, include: ['attention'], schedules: {train: 2, eval: [0]}}\n"
        "store: {flush_seconds: 1.5}\n"
        "token_ids: {pad: 0}\n")
    config = ProbeConfig.from_file(path)
    by_name = {c.name: c for c in config.collections}
    assert "activations" not in by_name
    assert by_name["gradients"].schedules["train"] == Schedule(every=5, dense_until=10)
    assert by_name["gradients"].histogram is False
    assert by_name["attention"].due("eval", 0) and not by_name["attention"].due("eval", 1)
    assert config.store.flush_seconds == 1.5 and config.token_ids == {"pad": 0}
    json_path = tmp_path / "probe.json"
    json_path.write_text(json.dumps(config.to_dict() | {"collections": {}}))
    assert ProbeConfig.from_file(json_path).preset == "default"


def test_meta_records_the_optimizers(tmp_path):
    import json

    import torch

    from gradprobe import Probe

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW([{"params": [model.weight], "lr": 1e-3}, {"params": [model.bias], "lr": 0.0}])
    with Probe(model, opt, out_dir=tmp_path / "run"):
        pass
    (described,) = json.loads((tmp_path / "run" / "meta.json").read_text())["optimizers"]
    assert described["type"] == "AdamW" and described["tensors"] == 2 and described["parameters"] == 8
    assert [g["lr"] for g in described["param_groups"]] == [1e-3, 0.0]
    assert described["param_groups"][0]["betas"] == "(0.9, 0.999)"
