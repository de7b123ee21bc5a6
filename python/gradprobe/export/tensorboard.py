"""TensorBoard export, reduced: scalars, per-tensor norms and the exponent histograms.

TensorBoard is an export, not the store: writing every statistic there would be orders of
magnitude slower and larger than the Parquet parts. Needs the `tensorboard` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..store import open_run


def export_tensorboard(run_path: str | Path, out_dir: str | Path | None = None,
                       kinds: tuple[str, ...] = ("grad", "weight", "update")) -> Path:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # tensorboard missing
        raise RuntimeError("the TensorBoard export needs the tensorboard package (pip install tensorboard)") from error
    run = open_run(run_path)
    out = Path(out_dir) if out_dir is not None else run.path / "tensorboard"
    writer = SummaryWriter(log_dir=str(out))
    try:
        scalars = run.scalars()
        for row in scalars.itertuples(index=False):
            writer.add_scalar(f"{row.mode}/{row.name}", row.value, _step(row), walltime=row.time)
        for kind in kinds:
            stats = run.stats(kind, stats=["l2", "nans", "infs"])
            for row in stats.itertuples(index=False):
                if row.present:
                    writer.add_scalar(f"{kind}_norm/{row.tensor}", row.l2, _step(row))
            rows, counts, edges = run.hist(kind)
            finite_edges = edges.copy()
            finite_edges[-1] = edges[-2] * 2  # TensorBoard needs finite bucket limits
            for i, row in enumerate(rows.itertuples(index=False)):
                total = counts[i].sum()
                if total == 0:
                    continue
                centers = np.sqrt(np.maximum(finite_edges[:-1], 1e-300) * finite_edges[1:])
                writer.add_histogram_raw(
                    f"{kind}_abs_exponent/{row.tensor}", min=float(finite_edges[np.argmax(counts[i] > 0)]),
                    max=float(finite_edges[len(counts[i]) - np.argmax(counts[i][::-1] > 0)]), num=int(total),
                    sum=float((counts[i] * centers).sum()), sum_squares=float((counts[i] * centers**2).sum()),
                    bucket_limits=finite_edges[1:].tolist(), bucket_counts=counts[i].tolist(),
                    global_step=_step(row))
    finally:
        writer.close()
    return out


def _step(row: Any) -> int:
    """A row's step (pandas' itertuples rows are untyped)."""
    return int(row.step)
