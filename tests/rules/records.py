"""Building scripted statistics records for rule tests."""

from __future__ import annotations

import numpy as np

from gradprobe.records import ScalarRecord, StatsRecord
from gradprobe.stats import FIELDS, HIST_BINS, HIST_EXP_MIN, Stats


def stats_record(step: int, kind: str, rows: dict[str, dict], mode: str = "train",
                 ratio: dict[str, float] | None = None) -> StatsRecord:
    """rows: name -> {numel, l1, l2, mean, std, min, max, zeros, nans, infs, exponent (all values |x| ~ 2^e)}."""
    names = list(rows)
    n = len(names)
    fields = FIELDS
    table = np.zeros((n, len(fields)))
    hist = np.zeros((n, HIST_BINS), np.int64)
    for i, name in enumerate(names):
        row = {"numel": 100, "l1": 1.0, "l2": 1.0, "mean": 0.0, "std": 0.1, "min": -1.0, "max": 1.0, "zeros": 0,
               "nans": 0, "infs": 0, **rows[name]}
        row.setdefault("finite", row["numel"] - row["nans"] - row["infs"])
        table[i] = [row[f] for f in fields]
        nonzero = int(row["finite"] - row["zeros"])
        if "hist" in row:
            hist[i] = row["hist"]
        else:
            exponent = row.get("exponent", -3)
            hist[i, exponent - HIST_EXP_MIN + 1] = nonzero
    ratios = None
    if ratio is not None:
        ratios = np.array([ratio.get(name, np.nan) for name in names])
    return StatsRecord(step, mode, kind, names, np.ones(n, bool), Stats.from_table(table, hist), ratios)


def scalars(step: int, mode: str = "train", **values: float) -> ScalarRecord:
    return ScalarRecord(step, mode, dict(values), float(step))
