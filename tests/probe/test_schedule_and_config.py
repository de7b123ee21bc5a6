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


@pytest.mark.parametrize("preset", ["minimal", "default", "full"])
def test_presets_grow_in_cost(preset):
    config = ProbeConfig.from_preset(preset)
    kinds = {c.kind for c in config.collections}
    assert "grad" in kinds
    if preset != "minimal":
        assert {"weight", "update", "activation"} <= kinds
    assert resolve_config(preset).preset == preset


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
