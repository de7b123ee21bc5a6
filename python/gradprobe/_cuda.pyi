"""gradprobe._cuda: the CUDA statistics pass (csrc/bindings_cuda.cpp); built only where nvcc exists."""

from typing import TypedDict

import numpy as np
import numpy.typing as npt

from ._core import TensorTable

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

class Status(TypedDict):
    usable: bool
    device_count: int
    runtime_version: int
    driver_version: int
    reason: str

def status() -> Status: ...

class CudaEngine:
    """Result slots (pinned host memory) form a ring of at most max_slots; launch returns -1,
    launching nothing, while every slot holds an unread result."""

    def __init__(self, device: int, max_slots: int = 64) -> None: ...
    def launch(self, table: TensorTable, stream: int, hist: bool) -> int: ...
    def ready(self, slot: int) -> bool: ...
    def read(self, slot: int, out: npt.NDArray[np.float64], hist: npt.NDArray[np.uint64] | None) -> None: ...
    def release(self, slot: int) -> None: ...
    @property
    def num_slots(self) -> int: ...
    @property
    def max_slots(self) -> int: ...
    @property
    def launches(self) -> int: ...
    @property
    def device(self) -> int: ...
