"""The post-step pass: weight updates (w_after - w_before) and the snapshot they are measured against.

The snapshot of the weights is taken before the first optimizer step of a step that records
updates. After the step, one launch measures the differences and the snapshot itself (for
|dw| / |w_before|). On a CPU-only model the backend's fused post-step operation does it in one read
of each array: the pairs, the weights (from the snapshot, i.e. as the forward used them) and the
snapshot refresh for the next step (StatsComputer.launch_post_step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from ..stats import PendingStats, StatsComputer
from ..stats.inputs import Table, concat_tables
from ..stats.post_step import PostStepTable
from .consumer import StatsItem
from .plans import CapturePlans, Due, PostStepLayout
from .tensor_table import TensorTable

# Launches a table for one kind; None when the launch was dropped (see TensorCapture.launch).
LaunchTable = Callable[[str, Table, bool], PendingStats | None]


class PostStepPass:
    def __init__(self, computer: StatsComputer, backend: str | None, put: Callable[[StatsItem], None],
                 launch: LaunchTable, report_skipped: Callable[[str, Sequence[str], Mapping[int, str]], None]) -> None:
        self._computer = computer
        self._backend = backend
        self._put = put
        self._launch = launch
        self._report_skipped = report_skipped
        self._snapshots: list[torch.Tensor] | None = None
        self._snapshot_tables: dict[Due, TensorTable] = {}
        self._params: TensorTable | None = None  # every parameter, to notice a changed layout
        self._param_keys = np.zeros(0, np.int64)  # the parameters' layout keys the snapshot was made for
        self.snapshot_step = -1  # the step whose pre-update weights the snapshot holds

    def reset(self) -> None:
        """The model changed: the snapshot no longer matches the parameters."""
        self._snapshots = None
        self._snapshot_tables = {}
        self._params = None
        self.snapshot_step = -1

    def fused_cpu(self, plans: CapturePlans, mode: str, step: int) -> bool:
        """Whether this step's weights and updates come from the fused CPU pass (after the step)."""
        return (mode == "train" and plans.all_cpu and self._backend in (None, "cpu")
                and bool(plans.update.due(mode, step)))

    def take_snapshot(self, plans: CapturePlans, mode: str, step: int) -> None:
        """Copies the weights that updates will be measured against (only on steps that record updates,
        and only if the previous step's fused CPU pass did not already leave them in the snapshot)."""
        if not plans.params or not plans.update.due(mode, step) or self.snapshot_step == step:
            return  # (a model that owns no parameter has nothing to snapshot)
        if self._params is None:
            self._params = TensorTable(plans.params)
        now = self._params.gather(None)
        keys = np.zeros(len(plans.params), np.int64)
        keys[now.rows] = now.keys
        if self._snapshots is None or not np.array_equal(keys, self._param_keys):
            # Layout-identical to each parameter (same strides) so that pairs read in memory order
            # pair logical elements; a non-dense parameter is read through a contiguous copy, so its
            # snapshot is contiguous.
            in_place = np.zeros(len(plans.params), bool)
            in_place[now.rows] = now.in_place
            self._snapshots = [torch.empty_strided(p.shape, p.stride(), dtype=p.dtype, device=p.device)
                               if dense else torch.empty(p.shape, dtype=p.dtype, device=p.device)
                               for p, dense in zip(plans.params, in_place)]
            self._snapshot_tables.clear()
            self._param_keys = keys
        with torch.no_grad():
            torch._foreach_copy_(self._snapshots, [p.detach() for p in plans.params])
        self.snapshot_step = step

    def run(self, plans: CapturePlans, mode: str, step: int, weight_due: Due) -> tuple[bool, bool]:
        """After the optimizer stepped: records updates (and weights, on the fused CPU pass).
        Returns (weights recorded, layout changed)."""
        update_due = plans.update.due(mode, step) if self.snapshot_step == step else ()
        if not update_due:
            return False, False
        layout = plans.post_step_layout(weight_due, update_due)
        gathered = layout.updates.table.gather(None)
        if gathered.skipped:
            self._report_skipped("update", layout.updates.names, gathered.skipped)
        after = gathered.table
        before = self._snapshot_table(update_due, layout).gather(None).table
        if (len(after) != len(layout.updates.index) or len(before) != len(after)
                or not np.array_equal(gathered.keys, self._param_keys[layout.updates.index])):
            # A parameter vanished, or changed shape, strides or dtype since the snapshot (param.data
            # replaced): pairing it with the old snapshot would read past one of them. Rebuild.
            return False, True
        pairs = Table(after.a_ptrs, before.a_ptrs, after.numels, after.dtypes_a, before.dtypes_a,
                      after.device_codes, after.source, [], None)
        if self.fused_cpu(plans, mode, step):
            return self._fused_cpu(plans, mode, step, layout, weight_due, update_due, pairs)
        # Elsewhere (GPU): the differences, then the snapshot itself for |dw| / |w_before|.
        k = len(after)
        pending = self._launch("update", concat_tables(pairs, before), plans.update.histogram(update_due))
        if pending is None:
            return False, False
        self._put(StatsItem(step, mode, "update", layout.updates.names, layout.updates.names_arrow,
                            np.arange(k), pending, ratio_rows=k + np.arange(k)))
        return False, False

    def _fused_cpu(self, plans: CapturePlans, mode: str, step: int, layout: PostStepLayout, weight_due: Due,
                   update_due: Due, pairs: Table) -> tuple[bool, bool]:
        """Rows: the k update pairs (w_after, snapshot = w_before), then the weight-part parameters
        outside the update set (frozen ones: unchanged by the step), then the k snapshots measured
        alone (the weights as the forward used them) before the pass refreshes them with w_after."""
        weights = layout.weight_table.gather(None)
        if weights.skipped:
            self._report_skipped("weight", [plans.names[i] for i in layout.weight_part], weights.skipped)
        k = len(pairs)
        in_pairs = np.zeros(len(layout.weight_part), bool)
        in_pairs[layout.ratio_positions] = True
        present_single = np.intersect1d(np.flatnonzero(~in_pairs), weights.rows)
        singles = weights.table.subset(np.searchsorted(weights.rows, present_single))
        refresh = bool(plans.update.due(mode, step + 1))
        weight_histogram = plans.weight.histogram(weight_due)
        pending: PendingStats = self._computer.launch_post_step(
            PostStepTable(pairs, singles, refresh_snapshot=refresh, snapshot_histogram=weight_histogram),
            histogram=plans.update.histogram(update_due) or weight_histogram, backend=self._backend)
        if refresh:
            self.snapshot_step = step + 1
        n = k + len(present_single)
        if weight_due:
            weight_rows = np.full(len(layout.weight_part), -1, np.int64)
            weight_rows[layout.ratio_positions] = n + np.arange(k)
            weight_rows[present_single] = k + np.arange(len(present_single))
            self._put(StatsItem(step, mode, "weight", layout.weights.names, layout.weights.names_arrow,
                                weight_rows[:len(layout.weights.names)], pending, histogram=weight_histogram))
        self._put(StatsItem(step, mode, "update", layout.updates.names, layout.updates.names_arrow,
                            np.arange(k), pending, ratio_rows=n + np.arange(k)))
        return bool(weight_due), weights.layout_changed

    def _snapshot_table(self, due: Due, layout: PostStepLayout) -> TensorTable:
        table = self._snapshot_tables.get(due)
        if table is None:
            assert self._snapshots is not None, "the snapshot is taken before the first optimizer step"
            table = self._snapshot_tables[due] = TensorTable([self._snapshots[i] for i in layout.updates.index])
        return table

