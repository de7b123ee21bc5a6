"""The probe: capture during training into a run directory."""

from .config import Collection, ProbeConfig, StoreConfig, builtin_collections
from .consumer import Observer, ScalarRecord, StatsRecord
from .probe import Probe
from .schedule import Schedule

__all__ = ["Collection", "Observer", "Probe", "ProbeConfig", "Schedule", "ScalarRecord", "StatsRecord",
           "StoreConfig", "builtin_collections"]
