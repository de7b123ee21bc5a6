"""Test inputs: random tensors with planted special values."""

from __future__ import annotations

import numpy as np
import torch

# Sizes at chunk +- 1 hit the split and pack paths; the core says where they are.
from gradprobe.stats._layout import CPU_CHUNK as CPU_CHUNK
from gradprobe.stats._layout import GPU_CHUNK as GPU_CHUNK

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
BLOCK = 512  # the CPU fast path's block


def planted(n: int, dtype: torch.dtype, generator: torch.Generator, *, device: str = "cpu",
            specials: bool = True) -> torch.Tensor:
    """N(0, 1)-ish data of mixed magnitudes, with NaN, +-Inf, +-0, subnormals and near-max values."""
    x = torch.randn(n, generator=generator, dtype=torch.float64)
    if n > 8:
        scale = torch.pow(10.0, torch.randint(-6, 3, (n,), generator=generator).to(torch.float64))
        x = x * scale
    x = x.to(dtype)
    if specials and n >= 16:
        info = torch.finfo(dtype)
        picks = torch.randperm(n, generator=generator)[:12]
        x[picks[0]] = float("nan")
        x[picks[1]] = float("inf")
        x[picks[2]] = float("-inf")
        x[picks[3]] = 0.0
        x[picks[4]] = -0.0
        x[picks[5]] = info.smallest_normal / 4  # subnormal
        x[picks[6]] = -info.smallest_normal / 8
        x[picks[7]] = info.max * 0.9
        x[picks[8]] = -info.max * 0.75
        x[picks[9]] = info.tiny
    return x.to(device)


def shapes_for(chunk: int) -> list[int]:
    return [0, 1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5, chunk - 1, chunk, chunk + 1, 3 * chunk + 517]


LAYOUTS = ["contiguous", "transposed", "permuted", "stepped", "expanded", "channels_last", "narrowed",
           "overlapping", "flipped"]


def layout_view(layout: str, seed: int, dtype: torch.dtype, device: str = "cpu") -> torch.Tensor:
    """A tensor of about 100-3000 elements in `layout`, a view of a larger base on `device` so that
    a view that read outside itself would read other values. "flipped" (negative strides) is a
    NumPy array: torch's flip copies."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(6, 7, 9, 5, generator=g).to(device=device, dtype=dtype)
    if layout == "contiguous":
        return base
    if layout == "transposed":
        return base[0, 0].t()
    if layout == "permuted":
        return base.permute(2, 0, 3, 1)
    if layout == "stepped":
        return base[::2, 1::3, :, ::2]
    if layout == "expanded":
        return base[:, :1, :1, :].expand(6, 7, 9, 5)
    if layout == "channels_last":
        return base.contiguous(memory_format=torch.channels_last)
    if layout == "narrowed":
        return base.narrow(1, 2, 3)
    if layout == "overlapping":
        return base.flatten().as_strided((40, 8), (3, 1), 5)
    if layout == "flipped":
        assert device == "cpu", "negative strides exist only in NumPy"
        numpy_dtype = {torch.float64: np.float64, torch.float16: np.float16}.get(dtype, np.float32)
        return base.float().numpy().astype(numpy_dtype)[::-1, :, ::-2]  # type: ignore[return-value]
    raise AssertionError(layout)


def logical(x) -> torch.Tensor:
    """The logical elements of x, contiguous, on the CPU (the oracle's input)."""
    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x.contiguous().cpu()
