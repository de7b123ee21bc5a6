"""The command line entry point."""

from __future__ import annotations

import subprocess
import sys


def test_backends_command_lists_cpu_and_reasons():
    out = subprocess.run([sys.executable, "-m", "gradprobe.cli", "backends"], capture_output=True, text=True,
                         check=True).stdout
    assert "cpu    usable" in out and "torch  usable" in out
    if "cuda   usable" not in out:
        assert "cuda   unavailable: " in out
