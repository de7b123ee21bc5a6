"""Turns user inputs (torch tensors, NumPy, CuPy or DLPack arrays) into the raw table the kernels read.

Statistics do not depend on element order, so any dense layout (contiguous, transposed,
permuted) is read in place from its lowest address; other strided inputs (stepped slices,
expanded, overlapping, negative strides) are copied to a contiguous buffer first (documented
cost), and the copy is kept alive with the call. A torch tensor whose strides reach outside its
storage (a storage freed or shrunk under it) is refused by index. Pairs (a - b) are read in
memory order, so they are read in place only when both sides have the same strides; otherwise
both are copied to C order, which pairs logical elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _core
from ._layout import DTYPE_CODES

Device = tuple[str, int]  # ("cpu", -1) or ("cuda", index)
CPU: Device = ("cpu", -1)




class InputError(ValueError):
    """An input the statistics cannot be computed on; the message names its index."""


@dataclass
class Described:
    """One input, ready for the kernels."""

    ptr: int
    numel: int
    dtype: int
    device: Device
    keepalive: Any  # the object owning the memory (a copy when one was needed)
    kind: str  # "torch", "numpy" or "cupy"


@dataclass
class Table:
    """The raw input table: per row a data pointer (and b's, for pairs a - b; 0 otherwise), element
    count, dtype codes and device; `groups()` splits it per device."""

    a_ptrs: np.ndarray
    b_ptrs: np.ndarray
    numels: np.ndarray
    dtypes_a: np.ndarray
    dtypes_b: np.ndarray
    device_codes: np.ndarray  # per row: -1 for the CPU, k for cuda:k
    source: str  # "torch", "numpy", "cupy" or "mixed": whose arrays these are (picks the CUDA stream)
    a_objs: list[Any] = field(default_factory=list)  # what owns each row's memory (a copy when one was needed)
    b_objs: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.numels)

    def subset(self, rows: np.ndarray) -> Table:
        """The rows at `rows` (one device's share), in that order."""
        objs_a = [self.a_objs[i] for i in rows] if self.a_objs else []
        objs_b = None if self.b_objs is None else [self.b_objs[i] for i in rows]
        return Table(self.a_ptrs[rows], self.b_ptrs[rows], self.numels[rows], self.dtypes_a[rows],
                     self.dtypes_b[rows], self.device_codes[rows], self.source, objs_a, objs_b)

    def groups(self) -> dict[Device, np.ndarray]:
        """Row indices per device, in input order within each device."""
        codes = self.device_codes
        if codes.size == 0:
            return {}
        if (codes == codes[0]).all():
            return {device_of_code(int(codes[0])): np.arange(codes.size)}
        return {device_of_code(int(c)): np.flatnonzero(codes == c) for c in np.unique(codes)}


def concat_tables(*tables: Table) -> Table:
    """The rows of several tables, in order (for launches built from cached native tables)."""
    if len(tables) == 1:
        return tables[0]
    source = tables[0].source if all(t.source == tables[0].source for t in tables) else "mixed"
    return Table(np.concatenate([t.a_ptrs for t in tables]), np.concatenate([t.b_ptrs for t in tables]),
                 np.concatenate([t.numels for t in tables]), np.concatenate([t.dtypes_a for t in tables]),
                 np.concatenate([t.dtypes_b for t in tables]), np.concatenate([t.device_codes for t in tables]),
                 source, [], None)


def device_of_code(code: int) -> Device:
    return CPU if code < 0 else ("cuda", code)


def code_of_device(device: Device) -> int:
    return -1 if device[0] == "cpu" else device[1]


def _torch() -> Any:
    """The torch module, or None: torch is optional (inputs may be NumPy, CuPy or DLPack arrays)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is optional
        return None
    return torch


_TORCH_DTYPE_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16",
                      "torch.float64": "float64"}


def _dense_in_place(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether the elements fill one gap-free span (any dimension order), with positive strides."""
    dims = sorted((st, sz) for sz, st in zip(shape, strides) if sz != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def _inside_storage(t: Any) -> bool:
    """Whether every element the strides reach lies inside the tensor's storage (a storage shrunk
    by resize_ or freed, as FSDP does, leaves tensors that point past it)."""
    if t.data_ptr() == 0:
        return False
    span = 1 + sum(st * (size - 1) for st, size in zip(t.stride(), t.shape))
    return bool(t.storage_offset() + span <= t.untyped_storage().nbytes() // t.element_size())


def _check_inside_storage(i: int, t: Any) -> None:
    if not _inside_storage(t):
        raise InputError(f"tensor {i}: its elements lie outside its storage ({t.untyped_storage().nbytes()} bytes "
                         f"for shape {tuple(t.shape)}, strides {t.stride()}, offset {t.storage_offset()}); "
                         "was its storage freed or resized?")


def _describe_torch(i: int, t: Any) -> Described:
    torch = _torch()
    if t.layout != torch.strided:
        raise InputError(f"tensor {i}: {t.layout} tensors are not supported; pass a dense tensor (.to_dense())")
    if t.device.type == "meta":
        raise InputError(f"tensor {i}: meta tensors have no data")
    name = _TORCH_DTYPE_NAMES.get(str(t.dtype))
    if name is None:
        raise InputError(f"tensor {i}: dtype {t.dtype} is not supported (float16, bfloat16, float32, float64 are)")
    if t.device.type == "cpu":
        device = CPU
    elif t.device.type == "cuda":
        device = ("cuda", t.device.index if t.device.index is not None else torch.cuda.current_device())
    else:
        raise InputError(f"tensor {i}: device {t.device} is not supported (cpu and cuda are)")
    t = t.detach()
    if t.numel() > 0:
        _check_inside_storage(i, t)
        if not t.is_contiguous() and not _dense_in_place(t.shape, t.stride()):
            t = t.contiguous()
    return Described(t.data_ptr(), t.numel(), DTYPE_CODES[name], device, t, "torch")


def _numpy_dtype_name(dtype: np.dtype) -> str | None:
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return {2: "float16", 4: "float32", 8: "float64"}[dtype.itemsize]
    if dtype.name == "bfloat16":  # ml_dtypes
        return "bfloat16"
    return None


def _describe_numpy(i: int, a: np.ndarray) -> Described:
    name = _numpy_dtype_name(a.dtype)
    if name is None:
        raise InputError(f"tensor {i}: dtype {a.dtype} is not supported (float16, bfloat16, float32, float64 are)")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.size > 0 and not a.flags.c_contiguous:
        strides = [s // a.itemsize if s % a.itemsize == 0 else -1 for s in a.strides]
        if not _dense_in_place(a.shape, strides):
            a = np.ascontiguousarray(a)
    return Described(a.__array_interface__["data"][0], int(a.size), DTYPE_CODES[name], CPU, a, "numpy")


def _describe_cupy(i: int, a: Any) -> Described:
    name = _numpy_dtype_name(np.dtype(a.dtype))
    if name is None:
        raise InputError(f"tensor {i}: dtype {a.dtype} is not supported (float16, bfloat16, float32, float64 are)")
    if a.size > 0 and not a.flags.c_contiguous:
        strides = [s // a.itemsize if s % a.itemsize == 0 else -1 for s in a.strides]
        if not _dense_in_place(a.shape, strides):
            a = a.copy(order="C")
    return Described(int(a.data.ptr), int(a.size), DTYPE_CODES[name], ("cuda", int(a.device.id)), a, "cupy")


def describe_one(i: int, x: Any) -> Described:
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        return _describe_torch(i, x)
    if isinstance(x, np.ndarray):
        return _describe_numpy(i, x)
    if type(x).__module__.startswith("cupy") and hasattr(x, "__cuda_array_interface__"):
        return _describe_cupy(i, x)
    if isinstance(x, (bool, int, float, complex)) or x is None:
        raise InputError(f"tensor {i}: expected an array or tensor, got {type(x).__name__}")
    if hasattr(x, "__dlpack__"):
        if torch is not None:
            return _describe_torch(i, torch.from_dlpack(x))
        return _describe_numpy(i, np.from_dlpack(x))
    if np.iscomplexobj(x) or not hasattr(x, "__array__"):
        raise InputError(f"tensor {i}: expected an array or tensor, got {type(x).__name__}")
    return _describe_numpy(i, np.asarray(x))


def _torch_dtype_codes() -> dict[Any, int]:
    torch = _torch()
    return {torch.float32: DTYPE_CODES["float32"], torch.float16: DTYPE_CODES["float16"],
            torch.bfloat16: DTYPE_CODES["bfloat16"], torch.float64: DTYPE_CODES["float64"]}


def _fast_torch_table(a: Sequence[Any]) -> Table | None:
    """The common case without per-tensor Python: torch tensors (CPU or CUDA) of a supported dtype,
    each dense and inside its storage, read by the native gather (the probe's tensor tables use it
    too). Returns None when any input needs the full checks, which then name it."""
    torch = _torch()
    if torch is None:
        return None
    codes = _FAST_CODES.get("torch")
    if codes is None:
        codes = _FAST_CODES["torch"] = _torch_dtype_codes()
    n = len(a)
    ptrs, numels, keys = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    dtypes, devices, status = np.zeros(n, np.int32), np.zeros(n, np.int32), np.zeros(n, np.int32)
    try:
        _core.gather_tensors(a, None, codes, ptrs, numels, dtypes, devices, keys, status)
    except (AttributeError, TypeError, RuntimeError):  # a tensor subclass or device the gather cannot read
        return None
    if status.any():  # a copy, an unsupported dtype or layout, or outside its storage
        return None
    return Table(ptrs, np.zeros(n, np.int64), numels, dtypes, dtypes, devices, "torch", list(a), None)


_FAST_CODES: dict[str, dict[Any, int]] = {}  # filled once: torch's dtype objects -> codes


def build_table(a: Sequence[Any], b: Sequence[Any] | None = None) -> Table:
    """Describes the inputs; with `b`, row i is the pair a[i] - b[i] (same shape, same device)."""
    if isinstance(a, (str, bytes)) or not hasattr(a, "__len__"):
        raise InputError("expected a sequence of tensors")
    if b is not None and len(b) != len(a):
        raise InputError(f"diff_stats: {len(a)} tensors in a but {len(b)} in b")
    n = len(a)
    if b is None:
        fast = _fast_torch_table(a)
        if fast is not None:
            return fast
    a_ptrs = np.zeros(n, np.int64)
    b_ptrs = np.zeros(n, np.int64)
    numels = np.zeros(n, np.int64)
    dtypes_a = np.zeros(n, np.int32)
    dtypes_b = np.zeros(n, np.int32)
    devices = np.zeros(n, np.int32)
    sources: set[str] = set()
    a_objs: list[Any] = []
    b_objs: list[Any] | None = None if b is None else []
    for i in range(n):
        da = describe_one(i, a[i])
        a_ptrs[i], numels[i], dtypes_a[i] = da.ptr, da.numel, da.dtype
        dtypes_b[i] = da.dtype
        a_objs.append(da.keepalive)
        if b is not None:
            db = describe_one(i, b[i])
            if not _same_memory_order(da.keepalive, db.keepalive):
                # Pairs are read in memory order: both sides in one order (C) pair logical elements.
                da, db = describe_one(i, _contiguous(da.keepalive)), describe_one(i, _contiguous(db.keepalive))
                a_ptrs[i] = da.ptr
                a_objs[-1] = da.keepalive
            if db.numel != da.numel or tuple(getattr(a[i], "shape", ())) != tuple(getattr(b[i], "shape", ())):
                raise InputError(
                    f"tensor {i}: shapes differ in diff_stats ({tuple(a[i].shape)} vs {tuple(b[i].shape)})")
            if db.device != da.device:
                raise InputError(f"tensor {i}: a is on {device_name(da.device)} but b on {device_name(db.device)}")
            b_ptrs[i], dtypes_b[i] = db.ptr, db.dtype
            assert b_objs is not None
            b_objs.append(db.keepalive)
        devices[i] = code_of_device(da.device)
        sources.add(da.kind)
    source = sources.pop() if len(sources) == 1 else ("mixed" if sources else "torch")
    return Table(a_ptrs, b_ptrs, numels, dtypes_a, dtypes_b, devices, source, a_objs, b_objs)


def _element_strides(x: Any) -> tuple[int, ...] | None:
    """Strides in elements, ignoring size-1 dimensions (their stride is arbitrary); None if unknown."""
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        strides = x.stride()
    elif hasattr(x, "strides") and hasattr(x, "itemsize"):
        strides = tuple(st // x.itemsize for st in x.strides)
    else:
        return None
    return tuple(st for st, size in zip(strides, x.shape) if size != 1)


def _same_memory_order(a: Any, b: Any) -> bool:
    """Whether a[j] and b[j] sit at the same offset for every logical j (both are dense already)."""
    sa, sb = _element_strides(a), _element_strides(b)
    return sa is not None and sa == sb


def _contiguous(x: Any) -> Any:
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        return x.contiguous()
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x)
    return x.copy(order="C")  # cupy


def device_name(device: Device) -> str:
    return "cpu" if device[0] == "cpu" else f"cuda:{device[1]}"

