"""What the report says, against what was planted: the NaN's origin, the findings and their rule
text, percentiles of known samples, the slow step, the sections without data, the downsampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradprobe.report import write_report
from gradprobe.report.data import load, on_train_axis
from gradprobe.report.downsample import column_max, envelope, step_columns
from gradprobe.report.findings import differing, rule_docs, shown_findings
from gradprobe.report.system import percentile_rows, slow_steps
from gradprobe.report.tensors import FLOAT_RANGES, chosen_layers, nonfinite_blocks
from gradprobe.rules.nonfinite import NonFinite
from gradprobe.store import open_run
from gradprobe.store.schema import PHASE_COLUMNS

from .runs import SLOW_STEP


def test_nonfinite_origin_is_the_first_module_whose_output_went_bad(runs):
    data = load(open_run(runs.nan))
    table = "".join(nonfinite_blocks(data))
    # activations in execution order: fc1 received the NaN input first; gradients: the last in model order
    assert "<tr><td>activation</td><td>train</td><td class=\"num\">15</td><td>fc1</td>" in table
    assert "<tr><td>grad</td><td>train</td><td class=\"num\">15</td><td>head.bias</td>" in table
    assert "No NaN or Inf" in "".join(nonfinite_blocks(load(open_run(runs.healthy))))


def test_findings_carry_their_rules_why_and_try_and_link_to_plots(runs):
    data = load(open_run(runs.nan))
    nonfinite = [f for f in data.findings if f.code == NonFinite.code]
    assert nonfinite and nonfinite[0].step == 15
    assert nonfinite[0].doc.why.startswith("one NaN spreads") and "lower the learning rate" in nonfinite[0].doc.tries
    html = write_report(runs.nan).read_text()
    assert "one NaN spreads to every weight" in html and '<a href="#activations">plots</a>' in html
    assert '<td>loss</td><td>value=0</td>' in html and '<a href="#losses">plots</a>' in html


def test_every_builtin_rule_has_its_explanation_split():
    docs = rule_docs()
    assert all(doc.what and doc.why and doc.tries for doc in docs.values()), \
        [code for code, doc in docs.items() if not (doc.what and doc.why and doc.tries)]
    assert docs["GP100"].section == "activations" and docs[NonFinite.code].profiler is False


def test_malformed_finding_events_are_skipped():
    events = [{"type": "finding", "code": "GP100", "step": 3, "message": "m"}, {"type": "finding", "code": "X"},
              {"type": "finding", "step": "not a number"}]
    found = shown_findings(events, rule_docs())
    assert [(f.code, f.step) for f in found] == [("GP100", 3)]


def test_percentiles_per_node_match_numpy(runs):
    rows = percentile_rows(open_run(runs.healthy).system())
    host_cpu = {row[0]: row for row in rows if row[1] == "cpu_percent" and row[2] == "host"}
    for node, values in runs.planted_cpu.items():
        _, _, _, low, p50, p90, p99, high, count = host_cpu[node]
        assert (low, high, count) == (values.min(), values.max(), len(values))
        assert (p50, p90, p99) == pytest.approx(np.percentile(values, [50, 90, 99]), rel=1e-12)


def test_the_planted_slow_step_is_the_outlier_and_its_phase_is_named(runs):
    phases = open_run(runs.healthy).phases()
    per_step = phases.groupby("step")[list(PHASE_COLUMNS)].max()
    slow = slow_steps(per_step, [c for c in PHASE_COLUMNS if c != "total"])
    assert [(step, phase) for step, _, _, phase in slow] == [(SLOW_STEP, "data_wait")]
    assert slow[0][2] > 4


def test_sections_without_data_say_so(runs):
    html = write_report(runs.nan).read_text()
    for message in ("No system samples were recorded.", "No step phases were recorded.",
                    "The profiler raised no finding."):
        assert message in html


def test_evaluations_are_plotted_at_the_training_step_they_followed(runs):
    scalars = open_run(runs.healthy).scalars(["loss"])
    x = on_train_axis(scalars)
    assert sorted(x[scalars["mode"].to_numpy() == "eval"].tolist()) == [9, 19, 29]
    assert (x[scalars["mode"].to_numpy() == "train"] == scalars["step"][scalars["mode"] == "train"]).all()


def test_chosen_layers_start_with_those_findings_name(runs):
    data = load(open_run(runs.nan))
    named = [t for f in data.findings for t in f.tensors if t in data.tensor_order and "." in t]
    assert chosen_layers(data)[0] == named[0]


def test_comparison_lists_only_the_findings_that_differ(runs):
    healthy, nan = load(open_run(runs.healthy)), load(open_run(runs.nan))
    rows = differing([healthy.findings, nan.findings])
    assert rows and all(steps[0] is None and steps[1] is not None for _, steps in rows)
    assert ("GP100", "train", ("fc1",)) in [key for key, _ in rows]
    assert differing([nan.findings, nan.findings]) == []


def test_float_ranges_are_the_formats_own():
    torch = pytest.importorskip("torch")
    for name, subnormal, normal, largest in FLOAT_RANGES:
        info = torch.finfo(getattr(torch, name))
        assert 2.0 ** normal == info.tiny and 2.0 ** largest == pytest.approx(info.max)
        assert 2.0 ** subnormal == info.smallest_normal * info.eps


def test_envelope_keeps_every_spike_and_dip_within_its_budget(rng_seed):
    rng = np.random.default_rng(rng_seed)
    y = rng.normal(size=100_000)
    spike, dip = rng.integers(0, 100_000, 2)
    y[spike], y[dip] = 1e6, -1e6
    x = np.arange(len(y))
    kept_x, kept_y = envelope(x, y, max_points=1000)
    assert len(kept_x) <= 1000 and np.all(np.diff(kept_x) > 0)
    assert spike in kept_x and dip in kept_x and np.array_equal(kept_y, y[kept_x])
    short_x, short_y = envelope(x[:10], y[:10], max_points=1000)
    assert np.array_equal(short_x, x[:10])


def test_step_columns_and_column_max_against_a_plain_loop(rng_seed):
    rng = np.random.default_rng(rng_seed)
    steps = np.sort(rng.integers(0, 5000, 3000))
    columns, starts = step_columns(steps, max_columns=100)
    assert len(starts) <= 100 and columns.max() == len(starts) - 1
    assert np.all(starts[columns] <= steps)
    rows = rng.integers(0, 4, len(steps))
    values = rng.normal(size=len(steps))
    values[::7] = np.nan
    grid = column_max(columns, rows, values, (4, len(starts)))
    frame = pd.DataFrame({"r": rows, "c": columns, "v": values}).dropna()
    expected = frame.groupby(["r", "c"])["v"].max()
    for (r, c), v in expected.items():
        assert grid[r, c] == v
    assert np.isnan(grid).sum() == grid.size - len(expected)


def test_a_run_with_nothing_recorded_reports_every_section_empty(tmp_path, runs):
    (tmp_path / "meta.json").write_text('{"status": "not_attached", "attached": null}')
    html = write_report(tmp_path).read_text()
    for message in ("No losses or metrics were recorded.", "No rule fired on this run.",
                    "No gradient histograms were recorded.", "No activation statistics were recorded",
                    "No system samples were recorded."):
        assert message in html
    compared = write_report([tmp_path, runs.nan], tmp_path / "compare.html").read_text()
    assert "The runs share no gradient-recorded layer." in compared
