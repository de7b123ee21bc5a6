"""The workflows' run directory, checked before any data or model is loaded: the Probe would refuse
an existing run only when training starts, minutes later. Imports neither torch nor transformers."""

from __future__ import annotations

from pathlib import Path

from ..store.ownership import is_gradprobe_run
from ..store.schema import META_FILE

EXIST_CHOICES = ("error", "append", "overwrite")


class RunDirectoryExists(RuntimeError):
    """out_dir already holds a run and exist='error'."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already holds a run; choose another out_dir, or pass exist='overwrite' (replace "
                         "it) or exist='append' (continue it)")
        self.path = path


def check_run_dir(path: Path, exist: str) -> None:
    """Raises what the Probe would raise for this directory, without touching it."""
    if exist not in EXIST_CHOICES:
        raise ValueError(f"exist must be one of {', '.join(EXIST_CHOICES)}, not {exist!r}")
    if not (path / META_FILE).exists():
        return
    if exist == "error":
        raise RunDirectoryExists(path)
    if not is_gradprobe_run(path):
        raise RuntimeError(f"{path} holds a {META_FILE} that gradprobe did not write; refusing to {exist} it: "
                           "choose another directory")


def refusal_line(command: str, path: Path) -> str:
    """What the command line says for RunDirectoryExists: the directory and the flag to use."""
    return (f"gradprobe {command}: {path} already holds a run; choose another --out, or pass --overwrite to "
            "replace it")
