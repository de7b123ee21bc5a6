"""The native correctness driver (cpu_targets_driver.cpp) over every CPU SIMD target: on this machine
for its architecture, and for aarch64 (NEON, SVE at 256 bits) cross-compiled and run under qemu-user.
Each run compares every supported target with the float64 path and a long-double oracle on random
data with planted NaN, +-Inf, +-0, subnormals and near-max values."""

from __future__ import annotations

import platform
import shutil
import subprocess

import pytest

from .driver_build import build_driver

CROSS_CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
INSTALL_HINT = "apt-get install -y g++-aarch64-linux-gnu qemu-user"


@pytest.fixture(scope="module")
def aarch64_driver(tmp_path_factory):
    """The driver cross-compiled once (static, so qemu needs no aarch64 sysroot)."""
    return build_driver(CROSS_CXX, "aarch64", tmp_path_factory.mktemp("aarch64"), static=True)


def run_driver(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "PASSED" in done.stdout, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.skipif(platform.machine() != "x86_64", reason="builds the x86-64 targets")
@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ on PATH")
def test_x86_targets_against_oracle(tmp_path, rng_seed):
    from gradprobe import _core

    supported = [name for name, ok, _ in _core.cpu_targets() if ok]
    out = run_driver([str(build_driver("g++", "x86_64", tmp_path)), str(rng_seed), "--expect", *supported])
    for name in supported:
        assert f"{name} " in out and "FAIL" not in out


@pytest.mark.skipif(shutil.which(CROSS_CXX) is None, reason=f"no aarch64 cross compiler ({INSTALL_HINT})")
@pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"no qemu-user ({INSTALL_HINT})")
@pytest.mark.parametrize("vector_bits", [256, 128])
def test_aarch64_targets_under_qemu(aarch64_driver, rng_seed, vector_bits):
    out = run_driver([QEMU, "-cpu", f"max,sve{vector_bits}=on", str(aarch64_driver), str(rng_seed), "--expect", "neon",
                      *(["sve256"] if vector_bits == 256 else [])])
    assert "neon " in out and "ok" in out
    if vector_bits != 256:  # the 256-bit build must not run on another vector length
        assert "sve256       skipped" in out
