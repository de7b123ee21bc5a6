"""Test inputs: random tensors with planted special values."""

from __future__ import annotations

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
