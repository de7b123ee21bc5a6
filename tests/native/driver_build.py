"""Builds the native CPU-target driver (cpu_targets_driver.cpp) for x86-64 or aarch64, with each
target's source compiled with its own flags exactly as cmake/CpuTargets.cmake does."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CPU = ROOT / "csrc" / "cpu"

# (source, flags) per architecture: keep in step with cmake/CpuTargets.cmake.
TARGET_SOURCES = {
    "x86_64": [("target_sse2.cpp", []), ("target_sse4.cpp", ["-msse4.2", "-mpopcnt"]),
               ("target_avx2.cpp", ["-mavx2", "-mfma", "-mf16c"]),
               ("target_avx512.cpp", ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl"])],
    "aarch64": [("target_neon.cpp", []), ("target_sve256.cpp", ["-march=armv8.2-a+sve", "-msve-vector-bits=256"])],
}


def build_driver(cxx: str, arch: str, out_dir: Path, static: bool = False) -> Path:
    """Compiles each source to an object with its flags, links the driver; returns its path."""
    common = ["-std=gnu++17", "-O2", "-Wall"]
    objects = []
    sources = [(CPU / "cpu_dispatch.cpp", []), (CPU / "exact_kernels.cpp", []),
               (Path(__file__).with_name("cpu_targets_driver.cpp"), [])]
    sources += [(CPU / name, flags) for name, flags in TARGET_SOURCES[arch]]
    for source, flags in sources:
        obj = out_dir / (source.stem + ".o")
        subprocess.run([cxx, *common, *flags, "-c", str(source), "-o", str(obj)], check=True,
                       capture_output=True, text=True)
        objects.append(str(obj))
    exe = out_dir / f"cpu_targets_driver_{arch}"
    subprocess.run([cxx, *objects, "-o", str(exe), *(["-static"] if static else [])], check=True,
                   capture_output=True, text=True)
    return exe
