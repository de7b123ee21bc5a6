"""The run directory: schema, writer, reader."""

from .config import StoreConfig
from .reader import Run, open_run
from .schema import SCHEMA_VERSION
from .writer import RunDirectoryError, RunWriter

__all__ = ["Run", "RunDirectoryError", "RunWriter", "SCHEMA_VERSION", "StoreConfig", "open_run"]
