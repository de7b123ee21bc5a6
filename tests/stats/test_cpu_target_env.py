"""GRADPROBE_CPU_TARGET chooses the CPU target of a process (how benchmarks and users reproduce
another CPU's path); a target this CPU cannot take is ignored, said in the reason and warned."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gradprobe import _core

PROBE = ("import warnings; warnings.simplefilter('always'); import torch, gradprobe; from gradprobe import _core; "
         "s = gradprobe.tensor_stats([torch.arange(10.0)], backend='cpu'); "
         "print(_core.cpu_path(), '|', _core.cpu_path_reason(), '|', float(s.to_pandas().l1[0]))")


def run_with(value: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GRADPROBE_CPU_TARGET": value})


def test_a_supported_target_is_taken():
    supported = [name for name, ok, _ in _core.cpu_targets() if ok and name != _core.best_cpu_path()]
    if not supported:
        pytest.skip("this CPU supports only one target")
    done = run_with(supported[0])
    path, reason, l1 = done.stdout.strip().split(" | ")
    assert path == supported[0] and "chosen by GRADPROBE_CPU_TARGET" in reason and float(l1) == 45.0


@pytest.mark.parametrize("value", ["not-a-target", "sve9"])
def test_an_unknown_target_is_ignored_and_said(value):
    done = run_with(value)
    path, reason, l1 = done.stdout.strip().split(" | ")
    assert path == _core.best_cpu_path() and f"GRADPROBE_CPU_TARGET={value} ignored" in reason
    assert f"GRADPROBE_CPU_TARGET={value} ignored" in done.stderr and float(l1) == 45.0
