"""How the run directory is written (one frozen dataclass, built from arguments or a config file)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreConfig:
    """How the run directory is written."""

    flush_seconds: float = 5.0  # a closed part at least this often: readers see data while training runs
    flush_rows: int = 50_000
    max_pending_rows: int = 2_000_000  # rows kept in memory while the disk refuses writes
    # Batches waiting for the writer thread; when full, the consumer thread waits for it (never the
    # training thread: the probe's own bounded queue sits in between and drops with a count).
    max_queued_batches: int = 256
