"""Statistics backends: cuda (compiled), cupy (run-time compiled), cpu (C++), torch (float64 reference)."""

from .base import Backend, Finished, Launch, ResultsRingFull

BACKEND_NAMES: tuple[str, ...] = ("cuda", "cupy", "cpu", "torch")

__all__ = ["BACKEND_NAMES", "Backend", "Finished", "Launch", "ResultsRingFull"]
