"""Framework adapters: thin callbacks around gradprobe.Probe for the Hugging Face Trainer
(`gradprobe.integrations.transformers`), Lightning (`gradprobe.integrations.lightning`) and
accelerate (`gradprobe.integrations.accelerate`).

Each adapter imports its framework, so import the one you use; `import gradprobe.integrations`
imports none of them (the core installs without transformers, Lightning or accelerate)."""

from __future__ import annotations

from ..report import write_report_or_warn as write_report
from .common import ProbeSettings

__all__ = ["ProbeSettings", "write_report"]
