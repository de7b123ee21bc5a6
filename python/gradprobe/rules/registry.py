"""The rule registry: built-in rules, rules from installed packages, and the default set."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

from .activations import DeadUnits, SaturatedActivation
from .base import Rule
from .classification import ClassImbalance, Confusion
from .divergence import Divergence
from .gradients import ExplodingGradient, LowPrecisionRange, VanishingGradient
from .initialization import PoorWeightInitialization
from .inputs import NLPSequenceRatio
from .loss import LossNotDecreasing, LossSpike, Overfit, Overtraining
from .nonfinite import NonFinite
from .steps import Dataloader, LoadBalancing, MaxInitializationTime, StepOutlier
from .system import StalledTraining
from .system_usage import (
    BatchSize,
    CPUBottleneck,
    GPUMemoryIncrease,
    IOBottleneck,
    LowGPUUtilization,
    OverallSystemUsage,
)
from .weights import AllZero, TensorVariance, UnchangedTensor, WeightUpdateRatio

BUILTIN: tuple[type[Rule], ...] = (
    NonFinite, VanishingGradient, ExplodingGradient, LowPrecisionRange, WeightUpdateRatio, AllZero,
    UnchangedTensor, TensorVariance, LossNotDecreasing, LossSpike, Divergence, Overfit, Overtraining, DeadUnits,
    SaturatedActivation, PoorWeightInitialization, ClassImbalance, Confusion, NLPSequenceRatio, StalledTraining,
    CPUBottleneck, IOBottleneck, LowGPUUtilization, BatchSize, GPUMemoryIncrease, OverallSystemUsage, StepOutlier,
    Dataloader, MaxInitializationTime, LoadBalancing,
)
ENTRY_POINT_GROUP = "gradprobe.rules"


def all_rules() -> list[type[Rule]]:
    """Built-in rules, then rules that installed packages register under the entry point group
    `gradprobe.rules` (each entry point names a Rule subclass)."""
    rules = list(BUILTIN)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Rule) and loaded not in rules:
            rules.append(loaded)
    return rules


def find(spec: str) -> type[Rule]:
    """A rule class by code (GP101) or class name (VanishingGradient), case-insensitive."""
    for rule in all_rules():
        if spec.upper() == rule.code.upper() or spec.lower() == rule.__name__.lower():
            return rule
    raise ValueError(f"unknown rule {spec!r}; `gradprobe rules` lists them")


def default() -> list[Rule]:
    """Rules whose defaults fire nothing on healthy runs (an MLP, a CNN, a BERT fine-tuning with
    evaluations, a GPT-2-style model with its standard init, an LSTM language model with Adam, a run
    that converges to ~0 loss; docs/detection.md) and name the planted pathologies there.

    In: NonFinite, VanishingGradient, ExplodingGradient, Divergence, WeightUpdateRatio, AllZero,
    UnchangedTensor, DeadUnits, SaturatedActivation, PoorWeightInitialization, LossNotDecreasing,
    Overfit and Overtraining (silent without evaluations), StalledTraining; the profiler's rules
    (silent without the profiler's records): CPUBottleneck (GPU runs; cpu_only=False),
    IOBottleneck, LowGPUUtilization, GPUMemoryIncrease, Dataloader, MaxInitializationTime,
    LoadBalancing and the never-firing OverallSystemUsage summary.
    Left out on purpose: LowPrecisionRange (only meaningful under fp16/bf16 training),
    NLPSequenceRatio (short reviews are mostly padding at a fixed length), BatchSize (advice, not a
    fault: most small experiments leave the GPU idle on purpose), StepOutlier (a shared or busy
    machine makes outliers of every phase: mean + 3 sd over 100-ms hiccups), ClassImbalance/Confusion
    (they need predictions, and imbalanced labels are often the task), TensorVariance (needs
    model-specific bounds), LossSpike (small batches are noisy; Divergence covers sustained rises).
    Tuned here: PoorWeightInitialization without its absolute gradient-spread check (p95 - p5 <
    0.001 holds for every fine-tuning at a small learning rate: gradients there are ~1e-4).
    """
    return [NonFinite(), VanishingGradient(), ExplodingGradient(), Divergence(), WeightUpdateRatio(), AllZero(),
            UnchangedTensor(), DeadUnits(), SaturatedActivation(), PoorWeightInitialization(distribution_range=0.0),
            LossNotDecreasing(), Overfit(), Overtraining(), StalledTraining(), CPUBottleneck(), IOBottleneck(),
            LowGPUUtilization(), GPUMemoryIncrease(), Dataloader(), MaxInitializationTime(),
            LoadBalancing(), OverallSystemUsage()]


def resolve(spec: str | Iterable[str | Rule] | None) -> list[Rule]:
    """Rules from a CLI/config value: 'default', 'all', or a comma-separated list of codes or names."""
    if spec is None or spec == "default":
        return default()
    if spec == "all":
        return [rule() for rule in all_rules()]
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [item if isinstance(item, Rule) else find(item.strip())() for item in items if item]
