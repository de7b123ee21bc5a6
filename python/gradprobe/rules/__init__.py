"""Rules: turn statistics into findings (code, layer, step), evaluated live or offline."""

from .base import Finding, Rule, Severity
from .engine import RuleEngine, at_least
from .registry import BUILTIN, all_rules, default, find, resolve

__all__ = ["BUILTIN", "Finding", "Rule", "RuleEngine", "Severity", "all_rules", "at_least", "default", "find",
           "resolve"]
