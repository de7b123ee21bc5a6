"""Shared test set-up: the `gpu` marker skips with a reason when no usable CUDA GPU exists."""

from __future__ import annotations

import os
import sys

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


@pytest.fixture(autouse=True)
def _no_warning_escaped_from_gradprobe_threads():
    """A gradprobe warning on its own threads is logged, not raised, where filters make warnings
    errors (gradprobe.own_warnings): the test fails here instead, as it would on the training thread."""
    yield
    own_warnings = sys.modules.get("gradprobe.own_warnings")
    escaped = own_warnings.take_escaped() if own_warnings is not None else []
    if escaped:
        pytest.fail("gradprobe warned on its own thread:\n" + "\n".join(escaped), pytrace=False)
