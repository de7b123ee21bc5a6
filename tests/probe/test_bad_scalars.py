"""A bad scalar (None, non-numeric, several elements) drops that scalar with one event, not the step."""

from __future__ import annotations

import warnings

import numpy as np
import torch

import gradprobe

from .helpers import TinyMLP, batch


def test_a_bad_metric_drops_itself_only_with_one_event_per_name(tmp_path):
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    bad_values = [None, "n/a", torch.ones(3), np.ones(2), 1 + 2j]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run") as probe:
            for step in range(2 * len(bad_values)):
                x, y = batch(step)
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                bad = bad_values[step % len(bad_values)]
                probe.step(loss=loss, metrics={"acc": 0.5 if step % 2 else torch.tensor(0.25), "odd": bad,
                                               "count": np.int64(step)})
    run = gradprobe.open_run(tmp_path / "run")
    scalars = run.scalars()
    per_step = scalars.groupby("step")["name"].apply(set)
    assert all(names >= {"loss", "lr", "metric/acc", "metric/count"} for names in per_step)
    assert len(per_step) == 2 * len(bad_values)
    assert "metric/odd" not in set(scalars["name"])
    counts = scalars[scalars["name"] == "metric/count"].sort_values("step")["value"].tolist()
    assert counts == [float(s) for s in range(2 * len(bad_values))]
    events = run.events("scalar_dropped")
    assert [e["name"] for e in events] == ["metric/odd"] and events[0]["reason"] == "it is None"
    assert sum("metric/odd" in str(w.message) for w in caught) == 1
