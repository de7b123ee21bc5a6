"""The native core is the one source of its ABI; what Python must still write a second time is
compared with it here."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

import numpy as np

from gradprobe import _core
from gradprobe.stats import FIELDS, HIST_BINS, Stats
from gradprobe.stats._layout import DTYPE_CODES
from gradprobe.stats.backends import cupy as cupy_backend
from gradprobe.store.schema import STAT_COLUMNS, STATS_SCHEMA


def test_cupy_tensor_desc_mirror_matches_the_core_layout():
    desc = cupy_backend.TENSOR_DESC
    assert desc.itemsize == _core.TENSOR_DESC_SIZE
    assert list(desc.names) == list(_core.TENSOR_DESC_FIELDS)
    for name, (offset, size) in _core.TENSOR_DESC_FIELDS.items():
        field_type, field_offset = desc.fields[name][:2]
        assert (field_offset, field_type.itemsize) == (offset, size), name
    # Fields are laid out in order, without overlap, inside the struct.
    spans = sorted(_core.TENSOR_DESC_FIELDS.values())
    assert all(a + sa <= b for (a, sa), (b, _) in zip(spans, spans[1:]))
    assert spans[-1][0] + spans[-1][1] <= _core.TENSOR_DESC_SIZE
    assert desc["a"] == np.dtype("<u8") and desc["numel"] == np.dtype("<i8") and desc["dtype_a"] == np.dtype("<i4")


def test_cupy_launch_constants_match_the_kernels():
    source = (resources.files("gradprobe") / "kernels" / "stats_kernels.cuh").read_text()
    block = re.search(r"constexpr int kBlockThreads = (\d+);", source)
    assert block is not None and int(block.group(1)) == cupy_backend.BLOCK_THREADS
    assert cupy_backend.GPU_CHUNK == _core.GPU_CHUNK and cupy_backend.PARTIAL_DOUBLES == _core.PARTIAL_DOUBLES


def test_python_names_of_the_statistics_follow_the_core():
    stats_fields = [f.name for f in dataclasses.fields(Stats)]
    assert tuple(stats_fields[:len(FIELDS)]) == FIELDS == tuple(_core.FIELDS)
    assert len(FIELDS) == _core.NUM_FIELDS and HIST_BINS == _core.HIST_EXP_MAX - _core.HIST_EXP_MIN + 2
    assert STAT_COLUMNS == FIELDS and all(name in STATS_SCHEMA.names for name in FIELDS)
    assert DTYPE_CODES == dict(_core.DTYPE_CODES) and sorted(DTYPE_CODES.values()) == [0, 1, 2, 3]
    flags = [_core.COPY_A_TO_B, _core.NO_HIST_FOR_A, _core.ROW_OF_B]
    assert len(set(flags)) == 3 and all(f and not f & (f - 1) for f in flags)  # distinct single bits
