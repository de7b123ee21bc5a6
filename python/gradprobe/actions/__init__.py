"""Actions: what happens when a rule finds something."""

from .base import Action
from .basic import Log, StopTraining
from .email import Email
from .webhook import Webhook

__all__ = ["Action", "Email", "Log", "StopTraining", "Webhook"]
