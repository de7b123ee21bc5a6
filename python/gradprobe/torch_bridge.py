"""The libtorch metadata reader (csrc/torch_bridge.cpp): installed into gradprobe._core when it was
built against the running torch, so that reading a tensor's pointer, shape, strides and storage costs
~20 ns instead of ~1 us of CPython calls. Without it (another torch, a build without torch) the
CPython path reads the same metadata; `status()` says which is in use and why.

Call `install()` only where torch is already imported (the probe, tensor_stats on torch tensors):
`import gradprobe` stays free of torch.
"""

from __future__ import annotations

import importlib
import sys

from . import _core

_state: dict[str, str] = {}


def install() -> str:
    """Installs the reader once; returns how tensors are read ("libtorch" or "cpython: <why>")."""
    if "status" in _state:
        return _state["status"]
    _state["status"] = _try_install()
    return _state["status"]


def status() -> str:
    return _state.get("status", "not tried")


def _try_install() -> str:
    torch = sys.modules.get("torch")
    if torch is None:
        return "cpython: torch is not imported"
    try:
        built = importlib.import_module("gradprobe._torch_build")
    except ImportError:
        return "cpython: gradprobe was built without torch importable (no libtorch reader)"
    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", -1))
    if torch.__version__ != built.TORCH_VERSION or abi != built.CXX11_ABI:
        return (f"cpython: the libtorch reader was built for torch {built.TORCH_VERSION} (ABI {built.CXX11_ABI}), "
                f"this is {torch.__version__} (ABI {abi}); rebuild gradprobe for the fast path")
    try:
        bridge = importlib.import_module("gradprobe._torch_bridge")
    except ImportError as error:
        return f"cpython: the libtorch reader does not load: {error}"
    _core.install_fast_gather(bridge.capsule())
    return "libtorch"


def uninstall() -> None:
    """Back to the CPython path (tests compare the two)."""
    _core.install_fast_gather(None)
    _state["status"] = "cpython: uninstalled"
