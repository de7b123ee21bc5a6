"""The run directory's layout and table schemas (versioned; readers upgrade old parts).

run/
  meta.json                 model structure, parameters, config, versions, hardware, times
  events.jsonl              lifecycle, findings, actions: one JSON object a line, flushed per event
  stats/rank0/part-000001.parquet      per-step tensor statistics (long form)
  scalars/rank0/part-000001.parquet    losses, metrics, learning rates, gradprobe's own overhead
  inputs/rank0/...                     token-id counts of model inputs
  system/rank0/...                     system samples (long form: one metric of one device a row)
  phases/rank0/...                     per-step phase durations (data wait, forward, backward, ...)
A part being written is named _part-*.tmp and renamed when complete, so readers never see half a part.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute

from ..stats import COUNT_FIELDS, FIELDS
from ..stats.histograms import sparse_hist_rows

SCHEMA_VERSION = 1
TABLES: tuple[str, ...] = ("stats", "scalars", "inputs", "system", "phases")
META_FILE = "meta.json"
EVENTS_FILE = "events.jsonl"
PART_GLOB = "part-*.parquet"

# One column per native statistic field (schema version 1 stores all of them, in this order).
STAT_COLUMNS: tuple[str, ...] = FIELDS
_INT_STATS = COUNT_FIELDS

STATS_SCHEMA = pa.schema(
    [("step", pa.int64()), ("mode", pa.string()), ("kind", pa.string()), ("tensor", pa.string()),
     ("present", pa.bool_())]
    + [(c, pa.int64() if c in _INT_STATS else pa.float64()) for c in STAT_COLUMNS]
    # Histogram kept sparse: counts of bins hist_lo .. hist_lo + len(hist) - 1.
    + [("hist_lo", pa.int16()), ("hist", pa.list_(pa.int64()))]
    # Updates: |w_after - w_before| / |w_after| (null for other kinds).
    + [("ratio", pa.float64())]
)
SCALARS_SCHEMA = pa.schema([("step", pa.int64()), ("mode", pa.string()), ("name", pa.string()),
                            ("value", pa.float64()), ("time", pa.float64())])
INPUTS_SCHEMA = pa.schema([("step", pa.int64()), ("mode", pa.string()), ("input", pa.string()),
                           ("token", pa.string()), ("count", pa.int64()), ("total", pa.int64())])
# System samples: `device` is "host" (machine-wide), "process", "cpu<i>" (one core) or "gpu<i>" (NVML
# index of a GPU this process uses); `metric` names are listed in gradprobe.profiler (units in the name).
SYSTEM_SCHEMA = pa.schema([("time", pa.float64()), ("node", pa.string()), ("device", pa.string()),
                           ("metric", pa.string()), ("value", pa.float64())])
# Step phases: seconds per phase of one step (NaN where a phase was not measured); `time` is the
# step's start (unix seconds).
PHASE_COLUMNS: tuple[str, ...] = ("data_wait", "forward", "backward", "optimizer", "gradprobe", "total")
PHASES_SCHEMA = pa.schema([("step", pa.int64()), ("mode", pa.string()), ("node", pa.string()),
                           ("time", pa.float64())] + [(c, pa.float64()) for c in PHASE_COLUMNS])
SCHEMAS = {"stats": STATS_SCHEMA, "scalars": SCALARS_SCHEMA, "inputs": INPUTS_SCHEMA,
           "system": SYSTEM_SCHEMA, "phases": PHASES_SCHEMA}


def part_metadata() -> dict[bytes, bytes]:
    return {b"gradprobe_schema": str(SCHEMA_VERSION).encode()}


def compact_hist(hist: np.ndarray | None, n: int) -> tuple[pa.Array, pa.Array]:
    """(hist_lo, hist) columns: each row's counts from its first to its last non-zero bin."""
    if hist is None:
        return pa.nulls(n, pa.int16()), pa.nulls(n, pa.list_(pa.int64()))
    lo, offsets, values = sparse_hist_rows(hist)
    return pa.array(lo), pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def expand_hist(lo: np.ndarray, lists: pa.Array | pa.ChunkedArray, bins: int) -> np.ndarray:
    """Dense (n, bins) counts from the sparse columns (null lists give zero rows)."""
    if isinstance(lists, pa.ChunkedArray):
        lists = pa.concat_arrays(lists.chunks) if lists.num_chunks else pa.array([], pa.list_(pa.int64()))
    n = len(lists)
    dense = np.zeros((n, bins), dtype=np.int64)
    if n == 0:
        return dense
    lengths = np.nan_to_num(pa.compute.list_value_length(lists).to_numpy(zero_copy_only=False), nan=0).astype(np.int64)
    values = lists.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.repeat(np.arange(n), lengths)
    within = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    dense[rows, np.repeat(np.asarray(lo, np.int64), lengths) + within] = values
    return dense


def upgrade(table: pa.Table, version: int, name: str) -> pa.Table:
    """Brings a part written under an older schema version to the current one."""
    if version > SCHEMA_VERSION:
        raise ValueError(f"{name} part has schema version {version}, newer than this gradprobe ({SCHEMA_VERSION})")
    # Version 1 is the first; later versions add their upgrades here, oldest first.
    return table
