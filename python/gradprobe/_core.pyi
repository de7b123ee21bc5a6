"""gradprobe._core: the CPU statistics pass (csrc/bindings_core.cpp) and the native ABI constants
(csrc/table_args.hpp, register_constants)."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str
HIST_BINS: int
HIST_EXP_MIN: int
HIST_EXP_MAX: int
NUM_FIELDS: int
FIELDS: tuple[str, ...]
COUNT_FIELDS: tuple[str, ...]
DTYPE_CODES: dict[str, int]
CPU_CHUNK: int
GPU_CHUNK: int
PARTIAL_DOUBLES: int
COPY_A_TO_B: int
NO_HIST_FOR_A: int
ROW_OF_B: int
TENSOR_DESC_FIELDS: dict[str, tuple[int, int]]
TENSOR_DESC_SIZE: int
TASK_SIZE: int
CHUNK: int

class TensorTable:
    def __init__(self, a_ptrs: npt.NDArray[np.int64], b_ptrs: npt.NDArray[np.int64], numels: npt.NDArray[np.int64],
                 dtypes_a: npt.NDArray[np.int32], dtypes_b: npt.NDArray[np.int32]) -> None: ...
    def __len__(self) -> int: ...

class PostStepTable:
    def __init__(self, table: TensorTable, rows: npt.NDArray[np.int64], flags: npt.NDArray[np.int64]) -> None: ...
    def __len__(self) -> int: ...
    @property
    def output_rows(self) -> int: ...

class PostStepEngine:
    def __init__(self) -> None: ...
    def run(self, table: PostStepTable, out: npt.NDArray[np.float64], hist: npt.NDArray[np.uint64] | None,
            threads: int = 0) -> None: ...

class CpuEngine:
    def __init__(self) -> None: ...
    def run(self, table: TensorTable, out: npt.NDArray[np.float64], hist: npt.NDArray[np.uint64] | None,
            threads: int = 0) -> None: ...

def plan(numels: npt.ArrayLike, chunk: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                      npt.NDArray[np.int64]]: ...
def gather_tensors(objects: Sequence[Any], attr: str | tuple[str, ...] | None, codes: dict[Any, int],
                   ptrs: npt.NDArray[np.int64],
                   numels: npt.NDArray[np.int64], dtypes: npt.NDArray[np.int32],
                   devices: npt.NDArray[np.int32], keys: npt.NDArray[np.int64],
                   status: npt.NDArray[np.int32]) -> int: ...
GATHER_STATUS: dict[str, int]
def has_avx512() -> bool: ...
def cpu_path() -> str: ...
def best_cpu_path() -> str: ...
def cpu_path_reason() -> str: ...
def cpu_targets() -> list[tuple[str, bool, str]]: ...
def set_cpu_path(name: str) -> None: ...
def max_threads() -> int: ...
def read_floor_sum(ptr: int, n: int, threads: int = 0) -> float: ...
