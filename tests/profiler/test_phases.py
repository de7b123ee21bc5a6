"""The step-phase timer against planted sleeps in each phase, the DataLoader patch's lifecycle,
and the documented wrapper for other iterables."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, dataloader

from gradprobe import Probe, open_run
from gradprobe.profiler import timed

DATA, FORWARD, BACKWARD, OPTIMIZER = 0.02, 0.03, 0.05, 0.025
STEPS = 6


class SlowDataset(Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(DATA / 4)  # batches of 4
        return torch.randn(16), torch.randn(1)


class SlowBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        time.sleep(BACKWARD)
        return grad


class SlowModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(FORWARD)
        return SlowBackward.apply(self.linear(x))


class SlowSGD(torch.optim.SGD):
    def step(self, closure=None):
        time.sleep(OPTIMIZER)
        return super().step(closure)


def _train(out, batches, steps=STEPS, eval_steps=0):
    model = SlowModel()
    optimizer = SlowSGD(model.parameters(), lr=0.01)
    with Probe(model, optimizer, out_dir=out, config={"preset": "minimal"}, rules=[]) as probe:
        for step, (x, y) in enumerate(batches):
            if step == steps:
                break
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            probe.step(loss=loss)
        with torch.no_grad():
            for _ in range(eval_steps):
                model(torch.randn(4, 16))
                probe.step(mode="eval")
    return open_run(out)


def _check_planted(phases):
    assert len(phases) == STEPS
    # Each planted sleep lands in its phase and nowhere else (lower bounds: a busy machine only adds).
    for column, planted in (("data_wait", DATA), ("forward", FORWARD), ("backward", BACKWARD),
                            ("optimizer", OPTIMIZER)):
        assert (phases[column] >= planted * 0.95).all(), (column, phases[column].tolist())
    rest = phases[["data_wait", "forward", "backward", "optimizer", "gradprobe"]].sum(axis=1)
    assert (phases["total"] >= rest - 1e-6).all()
    assert (phases["total"] >= DATA + FORWARD + BACKWARD + OPTIMIZER).all()
    # The forward phase does not hold the backward's sleep, nor the backward the optimizer's (medians:
    # a busy machine may stretch a step or two).
    assert phases["forward"].median() < FORWARD + 0.9 * BACKWARD
    assert phases["backward"].median() < BACKWARD + 0.9 * OPTIMIZER


def test_each_phase_gets_its_planted_time_with_a_dataloader_and_no_code_change(tmp_path):
    loader = DataLoader(SlowDataset(), batch_size=4)
    original = dataloader._BaseDataLoaderIter.__next__
    run = _train(tmp_path / "run", loader, eval_steps=2)
    assert dataloader._BaseDataLoaderIter.__next__ is original  # the patch is gone after close
    phases = run.phases()
    _check_planted(phases[phases["mode"] == "train"])
    evals = run.phases("eval")
    assert len(evals) == 2 and evals["backward"].isna().all() and evals["optimizer"].isna().all()
    assert (evals["forward"] >= FORWARD * 0.95).all()
    assert run.meta["profiler"]["loaders"] == [{"num_workers": 0, "pin_memory": False, "batch_size": 4,
                                                "prefetch_factor": None, "dataset": "SlowDataset"}]


def test_the_wrapper_times_any_iterable(tmp_path):
    def batches():
        while True:
            time.sleep(DATA)
            yield torch.randn(4, 16), torch.randn(4, 1)

    model = SlowModel()
    optimizer = SlowSGD(model.parameters(), lr=0.01)
    with Probe(model, optimizer, out_dir=tmp_path / "run", config={"preset": "minimal"}, rules=[]) as probe:
        for step, (x, y) in enumerate(timed(batches(), probe)):
            if step == STEPS:
                break
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
            probe.step()
    _check_planted(open_run(tmp_path / "run").phases())


def test_without_the_loader_patch_the_wait_is_not_measured_and_torch_is_untouched(tmp_path):
    original = dataloader._BaseDataLoaderIter.__next__
    model = SlowModel()
    with Probe(model, torch.optim.SGD(model.parameters(), lr=0.1), out_dir=tmp_path / "run",
               config={"preset": "minimal", "profiler": {"loader": False}}, rules=[]) as probe:
        assert dataloader._BaseDataLoaderIter.__next__ is original
        for x, _ in DataLoader(SlowDataset(), batch_size=4):
            model(x).sum().backward()
            probe.step()
            break
    phases = open_run(tmp_path / "run").phases()
    assert math.isnan(phases["data_wait"].iloc[0]) and phases["forward"].iloc[0] >= FORWARD * 0.95


def test_two_probes_both_time_the_loader_and_torch_is_restored_whatever_the_closing_order(tmp_path):
    original = dataloader._BaseDataLoaderIter.__next__
    for order in ("nested", "crossed"):
        models = SlowModel(), SlowModel()
        first, second = (Probe(model, out_dir=tmp_path / order / name, config={"preset": "minimal"}, rules=[])
                         for model, name in zip(models, "ab"))
        for x, _ in DataLoader(SlowDataset(), batch_size=4):
            for model, probe in zip(models, (first, second)):
                model(x).sum().backward()
                probe.step()
            break
        (second if order == "nested" else first).close()
        assert dataloader._BaseDataLoaderIter.__next__ is not original  # the other one still times
        (first if order == "nested" else second).close()
        assert dataloader._BaseDataLoaderIter.__next__ is original
        for name in ("a", "b"):
            assert open_run(tmp_path / order / name).phases()["data_wait"].iloc[0] >= DATA * 0.95


def test_phases_off_records_no_phases(tmp_path):
    model = SlowModel()
    with Probe(model, out_dir=tmp_path / "run", config={"preset": "minimal", "profiler": {"phases": False}},
               rules=[]) as probe:
        model(torch.randn(2, 16)).sum().backward()
        probe.step()
    assert open_run(tmp_path / "run").phases().empty


@pytest.mark.gpu
def test_on_a_gpu_phases_are_device_times_read_late(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1)).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with Probe(model, optimizer, out_dir=tmp_path / "run", config={"preset": "minimal"}, rules=[]) as probe:
        for _ in range(20):
            model(torch.randn(256, 1024, device="cuda")).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
            probe.step()
    phases = open_run(tmp_path / "run").phases()
    assert len(phases) == 20
    assert (phases[["forward", "backward", "optimizer"]] > 0).all().all()


def test_a_failed_start_leaves_torch_as_it_was(tmp_path, monkeypatch):
    import threading

    from gradprobe.profiler import profiler as profiler_module

    def broken(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(profiler_module, "SystemSampler", broken)
    original = dataloader._BaseDataLoaderIter.__next__
    threads = set(threading.enumerate())
    model = SlowModel()
    with pytest.raises(OSError, match="no /proc here"):
        Probe(model, out_dir=tmp_path / "run", config={"profiler": {"system_interval": 0.5}}, rules=[])
    assert dataloader._BaseDataLoaderIter.__next__ is original
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert not [t for t in set(threading.enumerate()) - threads if t.name == "gradprobe-profiler"]
