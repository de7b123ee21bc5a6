"""Actions: what happens when a rule finds something."""

from .base import Action, ActionContext
from .basic import Log, StopTraining
from .email import Email
from .runner import ActionRunner
from .webhook import Webhook

__all__ = ["Action", "ActionContext", "ActionRunner", "Email", "Log", "StopTraining", "Webhook"]
