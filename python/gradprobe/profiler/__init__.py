"""The system and framework profiler: a system sampler (CPU, memory, disk, network, GPUs), a
step-phase timer (data wait, forward, backward, optimizer, gradprobe), the data-loader patch, a
deep capture window (torch.profiler) and the ranks' exchange. The probe runs it
(ProbeConfig.profiler); its rules live in gradprobe.rules (system_usage.py, steps.py); the metric
names, units in the name, are gradprobe.profiler.metrics (gradprobe/metrics.py). docs/profiler.md.
"""

from .. import metrics
from .capture import CaptureSteps, top_operators
from .config import ProfilerConfig
from .loader import timed
from .profiler import Profiler

__all__ = ["CaptureSteps", "Profiler", "ProfilerConfig", "metrics", "timed", "top_operators"]
