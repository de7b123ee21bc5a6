"""The kernels/ sources the CuPy backend compiles at run time are valid NVRTC input (no GPU needed:
NVRTC only compiles). Skipped, with the reason, when the NVRTC library is not installed."""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from importlib import resources

import pytest


def _nvrtc():
    roots = [p for p in sys.path if os.path.isdir(os.path.join(p, "nvidia"))]
    candidates = sorted(c for root in roots for c in glob.glob(os.path.join(root, "nvidia", "**", "libnvrtc.so*"),
                                                               recursive=True) if "builtins" not in c)
    if not candidates:
        pytest.skip("the NVRTC library (pip package nvidia-cuda-nvrtc) is not installed")
    return ctypes.CDLL(candidates[0])


def compile_kernels(arch: str, extra: tuple[bytes, ...] = ()) -> tuple[int, str, str]:
    nvrtc = _nvrtc()
    kernels = str(resources.files("gradprobe") / "kernels")
    assert os.path.isfile(os.path.join(kernels, "stats_kernels.cuh")), "kernels/ must ship with the package"
    program = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), b'#include "stats_kernels.cuh"\n', b"gradprobe.cu",
                                    0, None, None) == 0
    options = [b"-std=c++17", f"-I{kernels}".encode(), f"--gpu-architecture={arch}".encode(), *extra]
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    ptx = ""
    if status == 0:
        nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetPTX(program, buffer)
        ptx = buffer.value.decode()
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return status, log.value.decode(), ptx


@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
def test_kernels_compile_under_nvrtc(arch):
    status, log, ptx = compile_kernels(arch)
    assert status == 0, log
    assert ".entry gp_stats_kernel" in ptx  # extern "C": the name CuPy's get_function looks up


def test_float32_subnormals_survive_cupys_flush_to_zero():
    """CuPy appends -ftz=true to every NVRTC compile; a float-to-double conversion would then flush
    float32 subnormals to 0 (counted as zeros: seen on an H200). Inputs are widened by their bits."""
    status, log, ptx = compile_kernels("compute_90", (b"-ftz=true",))
    assert status == 0, log
    assert "cvt.ftz.f64.f32" not in ptx and "cvt.f64.f32" not in ptx
