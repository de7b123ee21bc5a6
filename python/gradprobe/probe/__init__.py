"""The probe: capture during training into a run directory."""

from ..records import Observer, ScalarRecord, StatsRecord
from ..store import StoreConfig
from .config import Collection, ProbeConfig, builtin_collections
from .probe import Probe
from .schedule import Schedule

__all__ = ["Collection", "Observer", "Probe", "ProbeConfig", "Schedule", "ScalarRecord", "StatsRecord",
           "StoreConfig", "builtin_collections"]
