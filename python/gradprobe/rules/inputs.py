"""Input rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .base import Finding, Rule


@dataclass
class NLPSequenceRatio(Rule):
    """The share of given token ids (e.g. padding, unknown) among the model inputs is above
    `threshold` (per token, from the inputs collection and the probe's token_ids).

    Why: mostly-padding batches waste compute; many unknown tokens mean a tokenizer or
    vocabulary mismatch (the model sees noise).
    Try: bucket sequences by length, use dynamic padding, check the tokenizer matches the model.
    """

    code = "GP160"
    threshold: float = 0.5
    _reported: dict[str, int] = field(default_factory=dict, repr=False)

    def on_inputs(self, step: int, mode: str, counts: Mapping[str, int], total: int) -> list[Finding]:
        found = []
        for token, count in counts.items():
            share = count / total if total else 0.0
            if share > self.threshold and token not in self._reported:
                self._reported[token] = step
                found.append(self.finding(step, mode, f"{100 * share:.0f}% of input tokens are {token} at step {step}. "
                                                       f"Next: pad dynamically or bucket by length; check the "
                                                       "tokenizer "
                                                       f"matches the model", (token,),
                                          share=share))
        return found
