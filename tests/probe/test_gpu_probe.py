"""On a GPU the probe's training-thread work never synchronises the host (GPU-marked)."""

from __future__ import annotations

import pytest
import torch

from gradprobe import Probe, open_run

from .helpers import TinyMLP, batch

pytestmark = pytest.mark.gpu


def test_probe_step_has_no_host_device_sync(tmp_path):
    model = TinyMLP().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)  # never syncs by itself
    with Probe(model, opt, out_dir=tmp_path / "run", config="full") as probe:
        # Copies from pageable host memory synchronise by themselves: the batches go to the GPU first.
        batches = [tuple(t.cuda() for t in batch(seed)) for seed in range(4)]

        def one_step(seed):
            x, y = batches[seed]
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=loss)

        one_step(0)  # first step allocates buffers and snapshots
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for seed in range(1, 4):
                one_step(seed)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    run = open_run(tmp_path / "run")
    assert list(run.steps()) == [0, 1, 2, 3]
    assert len(run.stats("update")) == 4 * 6 and len(run.stats("activation")) > 0
