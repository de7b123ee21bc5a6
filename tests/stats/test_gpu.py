"""CUDA and CuPy backends against the reference (skipped with a reason when no GPU is usable)."""

from __future__ import annotations

import pytest
import torch

import gradprobe
from gradprobe import diff_stats, tensor_stats
from gradprobe.stats.backends import ResultsRingFull
from gradprobe.stats.backends.cuda import CudaBackend
from gradprobe.stats.inputs import InputError, build_table

from .data import DTYPES, GPU_CHUNK, LAYOUTS, layout_view, logical, planted, shapes_for
from .oracle import assert_stats_close, reference

pytestmark = pytest.mark.gpu


def _gpu_backends() -> list[str]:
    return [b for b in ("cuda", "cupy") if b in gradprobe.backends()]


def test_cuda_backend_is_usable_where_a_gpu_is():
    assert "cuda" in gradprobe.backends(), gradprobe.unavailable_backends()


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d) for d in DTYPES])
def test_gpu_backends_match_reference(dtype, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, dtype, g).cuda() for n in shapes_for(GPU_CHUNK)]
    want = reference(tensors)
    for backend in _gpu_backends():
        assert_stats_close(tensor_stats(tensors, backend=backend), want, f"{backend} {dtype} seed={rng_seed}")


GPU_LAYOUTS = [layout for layout in LAYOUTS if layout != "flipped"]  # negative strides: NumPy only


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d) for d in DTYPES])
def test_gpu_statistics_of_every_layout_match_the_oracle(dtype, rng_seed):
    """Views of a larger CUDA base (transposed, channels_last, stepped, expanded, overlapping...): a
    kernel that read numel elements from data_ptr() would read the base's other values."""
    tensors = [layout_view(layout, rng_seed + i, dtype, device="cuda") for i, layout in enumerate(GPU_LAYOUTS)]
    want = reference([logical(t) for t in tensors])
    for backend in _gpu_backends():
        assert_stats_close(tensor_stats(tensors, backend=backend), want, f"{backend} {dtype} seed={rng_seed}")
    # Pairs whose sides have different memory orders are compared element by element.
    others = [(logical(t).double() * 0.5 + 1).to(dtype).cuda() for t in tensors]
    others = [o.t().contiguous().t() if o.dim() == 2 else o for o in others]
    assert_stats_close(diff_stats(tensors, others), reference([logical(t) for t in tensors],
                                                               [logical(o) for o in others]),
                       f"pairs {dtype} seed={rng_seed}", pair=True)


def test_gpu_tensor_whose_storage_was_shrunk_is_refused_by_name():
    shrunk = torch.ones(100, device="cuda")
    shrunk.untyped_storage().resize_(8)
    with pytest.raises(InputError, match="tensor 1: its elements lie outside its storage"):
        tensor_stats([torch.ones(3, device="cuda"), shrunk])


def test_gpu_many_tiny_and_mixed_devices(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    sizes = torch.randint(0, 40, (5000,), generator=g).tolist()
    tensors = [planted(n, torch.float32, g) for n in sizes]
    tensors = [t.cuda() if i % 3 else t for i, t in enumerate(tensors)]
    assert_stats_close(tensor_stats(tensors), reference(tensors), f"tiny mixed seed={rng_seed}")


def test_gpu_diff_stats(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    a = [planted(n, torch.bfloat16, g).cuda() for n in (3, GPU_CHUNK * 3 + 1)]
    b = [x.float() + 0.01 for x in a]
    assert_stats_close(diff_stats(a, b), reference(a, b), f"gpu diff seed={rng_seed}")


def test_async_launch_never_syncs_and_uses_one_launch_per_call():
    tensors = [torch.randn(n, device="cuda") for n in (10, 1 << 20, 3, 5 << 17)]
    computer = gradprobe.StatsComputer()
    computer.launch(tensors, None, histogram=True, backend=None).result()  # allocate buffers first
    engine = computer.backend("cuda").engine(torch.cuda.current_device())
    before = engine.launches
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        pending = [computer.launch(tensors, None, histogram=True, backend=None) for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert engine.launches - before == 3
    results = [p.result() for p in pending]
    assert_stats_close(results[-1], reference(tensors), "async")


def test_results_survive_slot_reuse():
    computer = gradprobe.StatsComputer()
    xs = [torch.full((1000,), float(i), device="cuda") for i in range(12)]
    pending = [computer.launch([x], None, histogram=False, backend="cuda") for x in xs]
    for i, p in enumerate(pending):
        assert p.result().mean[0] == float(i)


def test_cupy_backend_can_be_named_on_a_cuda_build(rng_seed):
    pytest.importorskip("cupy", reason="CuPy is not installed: the cupy backend cannot run")
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, torch.float32, g).cuda() for n in (0, 7, GPU_CHUNK + 1)]
    assert "cupy" in gradprobe.backends(), gradprobe.unavailable_backends()
    assert_stats_close(tensor_stats(tensors, backend="cupy"), reference(tensors), f"cupy seed={rng_seed}")
    b = [t + 0.5 for t in tensors]
    assert_stats_close(diff_stats(tensors, b, backend="cupy"), reference(tensors, b), f"cupy diff seed={rng_seed}",
                       pair=True)


def test_pinned_result_ring_is_bounded():
    backend = CudaBackend(max_slots=3)
    device = ("cuda", torch.cuda.current_device())
    xs = [torch.full((100,), float(i), device="cuda") for i in range(4)]
    held = [backend.launch(build_table([x]), device, False) for x in xs[:3]]
    with pytest.raises(ResultsRingFull, match="3 result slots"):
        backend.launch(build_table([xs[3]]), device, False)
    engine = backend.engine(device[1])
    assert engine.num_slots == engine.max_slots == 3
    held[0].release()
    torch.cuda.synchronize()
    again = backend.launch(build_table([xs[3]]), device, False)
    out = torch.empty(1, 11, dtype=torch.float64).numpy()
    again.read(out, None)
    assert out[0, 6] == 3.0 and engine.num_slots == 3  # mean of the fourth tensor, in a reused slot
