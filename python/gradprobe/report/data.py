"""What the report reads from a run, each table read once (a live run may grow between reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..stats import HIST_BINS
from ..store import Run
from ..store.schema import expand_hist
from .findings import ShownFinding, rule_docs, shown_findings

# gradprobe's own scalars (not the user's losses or metrics) start with this.
OWN_SCALAR_PREFIX = "gradprobe/"
OVERHEAD_SCALAR = "gradprobe/overhead_ms"
_STAT_COLUMNS = ["step", "mode", "kind", "tensor", "present", "numel", "l2", "zeros", "nans", "infs", "ratio"]


@dataclass
class RunData:
    run: Run
    stats: pd.DataFrame  # the columns the report plots, no histograms
    scalars: pd.DataFrame
    system: pd.DataFrame
    phases: pd.DataFrame
    findings: list[ShownFinding]
    tensor_order: list[str]  # model order (meta.json), then the rest by name
    _stats_table: pa.Table

    @property
    def name(self) -> str:
        return self.run.path.name or str(self.run.path)

    def hist(self, kind: str, tensor: str, mode: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """(steps, counts (n, HIST_BINS)) of one tensor's exponent histograms."""
        table = self._stats_table
        mask = pc.and_(pc.and_(pc.equal(table["kind"], kind), pc.equal(table["tensor"], tensor)),
                       pc.and_(pc.equal(table["mode"], mode), pc.is_valid(table["hist"])))
        rows = table.filter(mask)
        if rows.num_rows == 0:
            return np.zeros(0, np.int64), np.zeros((0, HIST_BINS), np.int64)
        counts = expand_hist(rows["hist_lo"].to_numpy(zero_copy_only=False).astype(np.int64), rows["hist"], HIST_BINS)
        steps = rows["step"].to_numpy()
        order = np.argsort(steps, kind="stable")
        return steps[order], counts[order]


def load(run: Run) -> RunData:
    table = run.table("stats")
    # Categorical names: a long run has millions of rows but few distinct tensors, modes and kinds.
    stats = table.select(_STAT_COLUMNS).to_pandas(strings_to_categorical=True)
    params = [p.get("name") for p in run.meta.get("parameters", []) if isinstance(p, dict)]
    model = run.meta.get("model")
    modules = [m.get("name") for m in (model.get("modules", []) if isinstance(model, dict) else [])
               if isinstance(m, dict)]
    rank = {name: i for i, name in enumerate(dict.fromkeys([*params, *modules]))}
    present = sorted(set(stats["tensor"].unique()), key=lambda t: (rank.get(_base(t), len(rank)), t))
    return RunData(run, stats, run.scalars(), run.system(), run.phases(),
                   shown_findings(run.events("finding"), rule_docs()), present, table)


def _base(label: str) -> str:
    """An activation label's module ("enc.0:input#2" -> "enc.0"), for model order."""
    return label.split(":")[0].split("#")[0]


def on_train_axis(scalars: pd.DataFrame) -> np.ndarray:
    """The step to plot each scalar row at: its own step for training rows; for eval and predict
    rows (which count their own steps), the training step recorded last before them, so a
    validation loss sits where training was when it was measured."""
    steps = scalars["step"].to_numpy()
    train = scalars[scalars["mode"] == "train"]
    if not len(train):
        return steps
    first = train.groupby("step")["time"].min().sort_values()
    at = np.searchsorted(first.to_numpy(), scalars["time"].to_numpy(), side="right") - 1
    mapped = first.index.to_numpy()[np.maximum(at, 0)]
    return np.where(scalars["mode"].to_numpy() == "train", steps, mapped)


def open_runs(runs: str | Path | Run | list[str | Path | Run] | tuple[str | Path | Run, ...]) -> list[Run]:
    items = [runs] if isinstance(runs, (str, Path, Run)) else list(runs)
    if not items:
        raise ValueError("write_report: no run given")
    return [item if isinstance(item, Run) else Run(item) for item in items]
