"""The rule registry: built-in rules, rules from installed packages, and the default set."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

from .activations import DeadUnits, SaturatedActivation
from .base import Rule
from .classification import ClassImbalance, Confusion
from .gradients import ExplodingGradient, LowPrecisionRange, VanishingGradient
from .initialization import PoorWeightInitialization
from .inputs import NLPSequenceRatio
from .loss import LossNotDecreasing, LossSpike, Overfit, Overtraining
from .nonfinite import NonFinite
from .system import StalledTraining
from .weights import AllZero, TensorVariance, UnchangedTensor, WeightUpdateRatio

BUILTIN: tuple[type[Rule], ...] = (
    NonFinite, VanishingGradient, ExplodingGradient, LowPrecisionRange, WeightUpdateRatio, AllZero,
    UnchangedTensor, TensorVariance, LossNotDecreasing, LossSpike, Overfit, Overtraining, DeadUnits,
    SaturatedActivation, PoorWeightInitialization, ClassImbalance, Confusion, NLPSequenceRatio, StalledTraining,
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
    """Rules whose defaults a healthy fine-tuning of a pre-trained BERT does not trigger.

    Left out on purpose: LowPrecisionRange (only meaningful under fp16/bf16 training),
    NLPSequenceRatio (short reviews are mostly padding at a fixed length), Overfit/Overtraining
    (they need evaluations), ClassImbalance/Confusion (they need predictions), TensorVariance
    (needs model-specific bounds), LossSpike (small batches are noisy).
    Tuned here: PoorWeightInitialization without its absolute gradient-spread check (p95 - p5 <
    0.001 holds for every fine-tuning at a small learning rate: gradients there are ~1e-4), and
    LossNotDecreasing over 25-step windows (fine-tuning losses are noisy per batch).
    """
    return [NonFinite(), VanishingGradient(), ExplodingGradient(), WeightUpdateRatio(), AllZero(),
            UnchangedTensor(), DeadUnits(), PoorWeightInitialization(distribution_range=0.0),
            LossNotDecreasing(num_steps=25), StalledTraining()]


def resolve(spec: str | Iterable[str | Rule] | None) -> list[Rule]:
    """Rules from a CLI/config value: 'default', 'all', or a comma-separated list of codes or names."""
    if spec is None or spec == "default":
        return default()
    if spec == "all":
        return [rule() for rule in all_rules()]
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [item if isinstance(item, Rule) else find(item.strip())() for item in items if item]
