"""Typed config: wrong types and out-of-range values are refused at construction, naming the file,
key, value and expected type; a failed Probe(...) leaves nothing running or locked."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradprobe
from gradprobe.probe.config import ProbeConfig
from gradprobe.probe.schedule import Schedule
from gradprobe.store import StoreConfig
from gradprobe.store.config import ConfigError
from gradprobe.store.ownership import live_writers

from .helpers import TinyMLP, train_steps


def test_a_string_flush_seconds_from_yaml_names_file_key_value_and_type(tmp_path):
    path = tmp_path / "probe.yaml"
    path.write_text('store:\n  flush_seconds: "5"\n')
    with pytest.raises(ConfigError) as error:
        ProbeConfig.from_file(path)
    text = str(error.value)
    assert str(path) in text and "store.flush_seconds" in text and "'5'" in text and "float" in text


@pytest.mark.parametrize(("data", "key"), [
    ({"cpu_threads": True}, "cpu_threads"),
    ({"cpu_threads": -1}, "cpu_threads"),
    ({"max_queued_items": 1.5}, "max_queued_items"),
    ({"close_timeout_seconds": "3"}, "close_timeout_seconds"),
    ({"close_timeout_seconds": float("inf")}, "close_timeout_seconds"),
    ({"backend": 3}, "backend"),
    ({"token_ids": {"pad": "0"}}, "token_ids"),
    ({"activation_modules": "leaf"}, "activation_modules"),
    ({"store": {"flush_rows": 0}}, "store.flush_rows"),
    ({"store": {"max_queued_batches": "8"}}, "store.max_queued_batches"),
    ({"store": {"flush_seconds": float("nan")}}, "store.flush_seconds"),
    ({"collections": {"gradients": {"include": "fc"}}}, "collections.gradients.include"),
    ({"collections": {"gradients": {"histogram": "no"}}}, "collections.gradients.histogram"),
    ({"collections": {"gradients": {"enabled": "false"}}}, "collections.gradients.enabled"),
    ({"collections": {"gradients": {"schedule": {"every": "2"}}}}, "collections.gradients.schedule.every"),
    ({"collections": {"gradients": {"schedule": [1, 2.5]}}}, "collections.gradients.schedule.steps"),
    ({"collections": {"gradients": {"schedules": {"train": {"ranges": [[1, "9"]]}}}}},
     "collections.gradients.schedule.ranges"),
])
def test_wrong_types_and_ranges_are_refused_with_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ProbeConfig.from_dict(data)


def test_dataclasses_check_their_fields_when_built_in_code():
    with pytest.raises(ConfigError, match="store.flush_seconds"):
        StoreConfig(flush_seconds="5")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="schedule.every"):
        Schedule(every=True)  # type: ignore[arg-type]
    assert StoreConfig(flush_seconds=2).flush_seconds == 2  # an int is a fine float


_GOOD = {
    "cpu_threads": st.integers(0, 64),
    "max_queued_items": st.integers(2, 4096),
    "max_queue_wait_seconds": st.floats(0, 10),
    "close_timeout_seconds": st.floats(0, 60),
}
_WRONG = st.one_of(st.text(max_size=3), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(sorted(_GOOD)), value=_WRONG)
def test_random_wrong_values_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        ProbeConfig.from_dict({key: value})


@settings(max_examples=100, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=_GOOD),
       flush=st.floats(0, 3600), rows=st.integers(1, 10**7),
       every=st.integers(0, 100), steps=st.lists(st.integers(0, 1000), max_size=4))
def test_random_valid_configs_are_accepted_and_round_trip(values, flush, rows, every, steps):
    config = ProbeConfig.from_dict({**values, "store": {"flush_seconds": flush, "flush_rows": rows},
                                    "collections": {"gradients": {"schedule": {"every": every, "steps": steps}}}})
    again = ProbeConfig.from_dict({k: v for k, v in json.loads(json.dumps(config.to_dict())).items()
                                   if k not in ("collections",)})
    assert again.store == config.store
    for key, value in values.items():
        assert getattr(config, key) == value
    (gradients,) = [c for c in config.collections if c.name == "gradients"]
    assert gradients.schedules["train"] == Schedule(every=every, steps=tuple(steps))


def _gradprobe_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("gradprobe")}


def test_a_failed_construction_leaves_nothing_running_or_locked_and_a_retry_works(tmp_path):
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _gradprobe_threads()
    with pytest.raises(ValueError, match="unknown rule"):
        gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run", rules="NOPE999", config={"close_timeout_seconds": 1})
    assert _gradprobe_threads() == before  # the writer and consumer threads were stopped
    assert live_writers(tmp_path / "run") in (0, None)  # the writer lock was released
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    assert hooks == 0
    with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run") as probe:  # exist="error" still works
        train_steps(model, optimizer, probe, 3)
    run = gradprobe.open_run(tmp_path / "run")
    assert run.status == "completed" and list(run.steps()) == [0, 1, 2]


def test_a_construction_failing_last_stops_writer_and_consumer_and_keeps_an_appended_run(tmp_path, monkeypatch):
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run") as probe:
        train_steps(model, optimizer, probe, 2)
    before = _gradprobe_threads()

    def broken_hooks(*args, **kwargs):
        raise RuntimeError("planted failure while registering hooks")

    monkeypatch.setattr("gradprobe.probe.probe.ProbeHooks", broken_hooks)
    for _ in range(2):  # the second try is not blocked by a lock the first one left
        with pytest.raises(RuntimeError, match="planted failure"):
            gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run", exist="append")
        assert _gradprobe_threads() == before
        assert live_writers(tmp_path / "run") in (0, None)
    run = gradprobe.open_run(tmp_path / "run")
    assert list(run.steps()) == [0, 1]  # the earlier session's data is untouched
    assert run.status == "completed" and len(run.meta["sessions"]) == 1  # meta.json as the session left it
    assert [e["error"] for e in run.events("start_failed")] == ["RuntimeError('planted failure while registering hooks')"] * 2
