"""Whether torch is tracing the model (torch.compile, torch.export) rather than running it: the
probe's forward hooks then do nothing, since their tensors are fake (no data) and their work would
enter the traced graph."""

from __future__ import annotations

import torch


def tracing() -> bool:
    """Whether torch.compile or torch.export is tracing (hooks there would enter the graph)."""
    compiler = getattr(torch, "compiler", None)
    if compiler is None:
        return False
    if compiler.is_compiling():
        return True
    is_exporting = getattr(compiler, "is_exporting", None)
    return bool(is_exporting is not None and is_exporting())
