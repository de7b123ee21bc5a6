"""The fused post-step operation, a CPU-only pass of its own (StatsComputer.launch_post_step).

After an optimizer step on a CPU model, one read of each array gives every statistic the probe
records for weights and updates: the update w_after - w_before of each pair, the weights outside
the pairs, the pre-update weights (the snapshot) alone, and, while each chunk is still in cache,
the snapshot's refresh with w_after for the next step. The general statistics table, the GPU
backends and the reference backend know nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._layout import COPY_A_TO_B, NO_HIST_FOR_A, ROW_OF_B
from .inputs import InputError, Table, concat_tables


@dataclass(frozen=True)
class PostStepTable:
    """Output rows: the k pairs (a = w_after, b = the snapshot), then the singles, then the k
    snapshots alone (read before the refresh overwrites them).

    refresh_snapshot: copy each pair's a into its b after reading it (the next step's snapshot).
    snapshot_histogram: whether the snapshots' own rows get histograms (else their counts stay 0).
    """

    pairs: Table
    singles: Table
    refresh_snapshot: bool
    snapshot_histogram: bool

    def __post_init__(self) -> None:
        if ((self.pairs.b_ptrs == 0) & (self.pairs.numels > 0)).any():
            raise InputError("post-step pass: every pair needs its snapshot (b)")
        groups = set(self.pairs.groups()) | set(self.singles.groups())
        if groups - {("cpu", -1)}:
            raise InputError("the post-step pass runs on host memory only; launch GPU tensors with launch_table")

    @property
    def output_rows(self) -> int:
        return 2 * len(self.pairs) + len(self.singles)

    def native_arrays(self) -> tuple[Table, np.ndarray, np.ndarray]:
        """(table, per-row output row of the snapshot alone or -1, per-row pair flags) for the core."""
        k, s = len(self.pairs), len(self.singles)
        table = concat_tables(self.pairs, self.singles)
        snapshot_rows = np.concatenate([k + s + np.arange(k), np.full(s, -1)]).astype(np.int64)
        flags = ROW_OF_B | (COPY_A_TO_B if self.refresh_snapshot else 0) | (0 if self.snapshot_histogram
                                                                               else NO_HIST_FOR_A)
        pair_flags = np.concatenate([np.full(k, flags), np.zeros(s)]).astype(np.int64)
        return table, snapshot_rows, pair_flags
