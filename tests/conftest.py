"""Shared test set-up: the `gpu` marker skips with a reason when no usable CUDA GPU exists."""

from __future__ import annotations

import os

import pytest


def _gpu_unavailable_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU is usable on this machine (torch.cuda.is_available() is False)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng_seed() -> int:
    """Fresh random data every run; the seed is printed on failure to reproduce it."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"random seed: {seed}")
    return seed
