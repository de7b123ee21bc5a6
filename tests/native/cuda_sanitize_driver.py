"""Drives every path of the CUDA statistics kernel on small inputs, for compute-sanitizer
(bench/gpu_check.sh runs it under memcheck, racecheck, synccheck and initcheck on a GPU machine):
each dtype at the chunk edges, with and without the histogram, chunk-split tensors, thousands of
tiny ones, every strided layout, pairs, and a probe's training steps. Every result is compared
with the float64 oracle, so a run the sanitizer finds clean also computed the right values.

Run: python tests/native/cuda_sanitize_driver.py   (exit 0 and "cuda sanitize driver: ok")
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gradprobe
from gradprobe import Probe, diff_stats, tensor_stats
from tests.probe.helpers import TinyMLP, batch
from tests.stats.data import DTYPES, GPU_CHUNK, LAYOUTS, layout_view, logical, planted, shapes_for
from tests.stats.oracle import assert_stats_close, reference


def main() -> None:
    assert "cuda" in gradprobe.backends(), gradprobe.unavailable_backends()
    g = torch.Generator().manual_seed(1234)
    for dtype in DTYPES:
        tensors = [planted(n, dtype, g).cuda() for n in shapes_for(GPU_CHUNK)]
        want = reference(tensors)
        for histogram in (True, False):
            got = tensor_stats(tensors, histogram=histogram, backend="cuda")
            assert (got.hist is not None) == histogram
            assert_stats_close(got, want, f"{dtype} hist={histogram}")
        others = [t.float() + 0.25 for t in tensors]
        assert_stats_close(diff_stats(tensors, others), reference(tensors, others), f"pairs {dtype}", pair=True)
    tiny = [planted(n, torch.float32, g).cuda() for n in torch.randint(0, 40, (3000,), generator=g).tolist()]
    assert_stats_close(tensor_stats(tiny), reference(tiny), "3000 tiny tensors")
    views = [layout_view(layout, i, torch.bfloat16, device="cuda") for i, layout in enumerate(LAYOUTS)
             if layout != "flipped"]
    assert_stats_close(tensor_stats(views), reference([logical(v) for v in views]), "layouts")

    model = TinyMLP().cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    with tempfile.TemporaryDirectory() as out, Probe(model, optimizer, out_dir=Path(out) / "run",
                                                     config="full") as probe:
        for seed in range(3):
            x, y = (t.cuda() for t in batch(seed))
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            probe.step(loss=loss)
    torch.cuda.synchronize()
    print("cuda sanitize driver: ok")


if __name__ == "__main__":
    main()
