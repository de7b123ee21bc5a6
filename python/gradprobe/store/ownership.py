"""What in a run directory belongs to gradprobe, and whether a writer is still alive.

- A marker file, written when gradprobe creates or adopts a run directory, is what allows
  `exist="overwrite"` to delete anything: a directory holding a meta.json that gradprobe did not
  write is never emptied. Overwrite removes only gradprobe's own entries.
- Each writing rank holds an exclusive advisory lock (flock) on its own lock file for as long as
  it writes. The kernel drops the lock when the process dies, however it dies (kill -9 included),
  so a reader that can take the lock knows that a run still marked "running" was killed.
  flock is per host: on a shared file system seen from another host the answer may be unknown.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from .schema import EVENTS_FILE, META_FILE, TABLES

MARKER_FILE = ".gradprobe"
LOCK_GLOB = ".writer-rank*.lock"


def lock_path(run_dir: Path, rank: int) -> Path:
    return run_dir / f".writer-rank{rank}.lock"


def mark_as_gradprobe_run(run_dir: Path) -> None:
    (run_dir / MARKER_FILE).write_text("This directory is a gradprobe run; gradprobe may overwrite it.\n")


def is_gradprobe_run(run_dir: Path) -> bool:
    return (run_dir / MARKER_FILE).is_file()


def gradprobe_entries(run_dir: Path) -> list[Path]:
    """The entries gradprobe writes in a run directory (and only those)."""
    names = {META_FILE, EVENTS_FILE, MARKER_FILE, *TABLES, "tensorboard"}
    found = [run_dir / name for name in names if (run_dir / name).exists()]
    found += list(run_dir.glob(LOCK_GLOB)) + list(run_dir.glob("_*.tmp"))
    return found


def remove_gradprobe_entries(run_dir: Path) -> None:
    for entry in gradprobe_entries(run_dir):
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


class WriterLock:
    """An exclusive flock held by a writing rank; released at close or by the kernel at death."""

    def __init__(self, run_dir: Path, rank: int) -> None:
        self.path = lock_path(run_dir, rank)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def live_writers(run_dir: Path) -> int | None:
    """How many ranks still hold their writer lock; None when no lock file exists (older runs)."""
    paths = list(run_dir.glob(LOCK_GLOB))
    if not paths:
        return None
    live = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            live += 1  # someone holds it exclusively: a live writer
        finally:
            os.close(fd)
    return live
