"""Findings as the report shows them: the stored events, with the rule's own explanation (its
docstring's Why / Typical causes / Try) and the section of the report whose plots show it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..rules import Rule, all_rules

# The report section that shows the evidence of each rule family (rules.<module>); unknown rules
# (installed by other packages) link to the findings table itself.
SECTION_OF_MODULE = {
    "nonfinite": "activations", "gradients": "layers", "weights": "layers", "initialization": "layers",
    "loss": "losses", "divergence": "losses", "classification": "losses", "inputs": "summary",
    "activations": "activations", "system": "system",
}
PROFILER_MODULES = ("gradprobe.rules.system", "gradprobe.profiler")
_DOC_HEADINGS = ("Why", "Typical causes", "Try")


@dataclass(frozen=True)
class RuleDoc:
    what: str = ""
    why: str = ""
    causes: str = ""
    tries: str = ""
    section: str = "findings"
    profiler: bool = False


@dataclass(frozen=True)
class ShownFinding:
    step: int
    mode: str
    code: str
    rule: str
    severity: str
    message: str
    tensors: tuple[str, ...]
    evidence: Mapping[str, float] = field(default_factory=dict)
    doc: RuleDoc = RuleDoc()

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        return (self.code, self.mode, self.tensors)


def rule_doc(rule: type[Rule]) -> RuleDoc:
    """The docstring split at its 'Why:', 'Typical causes:' and 'Try:' paragraphs."""
    text = " ".join((inspect.getdoc(rule) or "").split())
    pattern = "|".join(re.escape(h) for h in _DOC_HEADINGS)
    pieces = re.split(rf"\b({pattern}):", text)
    parts = {"what": pieces[0].strip()}
    for heading, body in zip(pieces[1::2], pieces[2::2]):
        parts[heading] = body.strip()
    module = rule.__module__
    return RuleDoc(parts["what"], parts.get("Why", ""), parts.get("Typical causes", ""), parts.get("Try", ""),
                   SECTION_OF_MODULE.get(module.rsplit(".", 1)[-1], "findings"),
                   module.startswith(PROFILER_MODULES))


def rule_docs() -> dict[str, RuleDoc]:
    """Every registered rule's doc by code."""
    return {rule.code: rule_doc(rule) for rule in all_rules()}


def shown_findings(events: Sequence[Mapping[str, Any]], docs: Mapping[str, RuleDoc]) -> list[ShownFinding]:
    """The run's finding events in step order; malformed events are skipped (a run may be cut)."""
    found = []
    for event in events:
        try:
            evidence = {str(k): float(v) for k, v in dict(event.get("evidence") or {}).items()}
            code = str(event.get("code", "?"))
            found.append(ShownFinding(int(event["step"]), str(event.get("mode", "train")), code,
                                      str(event.get("rule", "")), str(event.get("severity", "warning")),
                                      str(event.get("message", "")), tuple(str(t) for t in event.get("tensors") or ()),
                                      evidence, docs.get(code, RuleDoc())))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(found, key=lambda f: (f.step, f.code))


FindingKey = tuple[str, str, tuple[str, ...]]  # (code, mode, tensors)


def differing(per_run: Sequence[Sequence[ShownFinding]]) -> list[tuple[FindingKey, list[int | None]]]:
    """Finding keys not raised by every run, with each run's first step of it (None: not raised)."""
    firsts: list[dict[FindingKey, int]] = []
    for findings in per_run:
        first: dict[FindingKey, int] = {}
        for f in findings:
            first.setdefault(f.key, f.step)
        firsts.append(first)
    keys = sorted(set().union(*firsts), key=lambda k: (k[0], k[1], k[2]))
    return [(key, [first.get(key) for first in firsts]) for key in keys
            if any(key not in first for first in firsts)]
