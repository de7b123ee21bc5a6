"""Real tiny CPU trainings with one planted condition each: its rule fires and no other profiler
rule does (CPUBottleneck may also fire where the recorded samples show the shared machine's cores
saturated by other work: then it is right); a healthy run fires nothing."""

from __future__ import annotations

import hashlib
import threading
import time

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from gradprobe.records import LoaderRecord, PhaseRecord, SystemRecord
from gradprobe.rules import RuleEngine

from .helpers import allowed_noise, codes, profiler_rules, small_model, train


def batches(n: int, size: int = 8):
    torch.manual_seed(1)
    return [(torch.randn(size, 16), torch.randn(size, 1)) for _ in range(n)]


def paced(n: int, seconds: float = 0.01):
    """Batches at a steady pace, so that a run spans enough system samples."""
    for batch in batches(n):
        time.sleep(seconds)
        yield batch


def test_healthy_run_fires_nothing(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(1200, 16), torch.randn(1200, 1)), batch_size=8)
    findings, run = train(tmp_path / "run", loader, each_step=lambda step: time.sleep(0.01))
    assert codes(findings) <= allowed_noise(run), [f.message for f in findings]
    assert len(run.phases()) == 150
    summary = [e for e in run.events("rule_summary") if e["rule"] == "OverallSystemUsage"]
    assert summary and any(key.endswith("/host/cpu_util_pct") for key in summary[0]["summary"])


class SleepyDataset(Dataset):
    def __len__(self) -> int:
        return 400

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(0.01)
        return torch.randn(16), torch.randn(1)


def test_a_loader_sleeping_in_getitem_is_the_dataloader_rule_with_its_wait_share(tmp_path):
    findings, run = train(tmp_path / "run", DataLoader(SleepyDataset(), batch_size=4))
    assert "Dataloader" in codes(findings)
    assert codes(findings) - {"Dataloader"} <= allowed_noise(run), [f.message for f in findings]
    finding = next(f for f in findings if f.rule == "Dataloader")
    assert finding.evidence["wait_share"] > 0.5 and "num_workers=0" in finding.message
    phases = run.phases()
    assert phases["data_wait"].sum() / phases["total"].sum() > 0.5


def _burn(stop: threading.Event) -> None:
    block = b"x" * (1 << 20)
    while not stop.is_set():
        hashlib.sha256(block).digest()  # releases the GIL: a thread per core keeps every core busy


def test_cpu_burning_threads_are_a_cpu_bound_step_with_no_gpu_claim(tmp_path):
    stop = threading.Event()
    burners = [threading.Thread(target=_burn, args=(stop,), daemon=True) for _ in range(torch.get_num_threads() + 1)]
    for thread in burners:
        thread.start()
    try:
        findings, run = train(tmp_path / "run", paced(120))
    finally:
        stop.set()
        for thread in burners:
            thread.join()
    assert codes(findings) == {"CPUBottleneck"}, [f.message for f in findings]
    (finding,) = findings
    assert "CPU-bound step" in finding.message and "GPU" not in finding.message


def test_a_step_sleeping_every_50_steps_is_a_step_outlier_naming_the_phase(tmp_path):
    class SometimesSlow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = small_model()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls % 50 == 0:
                time.sleep(0.3)
            return self.inner(x)

    findings, run = train(tmp_path / "run", batches(210), model=SometimesSlow())
    outliers = [f for f in findings if f.rule == "StepOutlier"]
    assert [f.tensors for f in outliers] == [("forward",)] and "forward" in outliers[0].message
    assert outliers[0].step == 199  # the 4th sleep (steps 49, 99, 149, 199): more than n_outliers=3
    assert codes(findings) - {"StepOutlier"} <= allowed_noise(run), [f.message for f in findings]


def test_a_growing_list_of_tensors_is_memory_growth(tmp_path):
    kept = []

    def leak(step: int) -> None:
        kept.append(torch.ones(1 << 20))  # 4 MiB a step, never released
        time.sleep(0.01)

    findings, run = train(tmp_path / "run", batches(120), each_step=leak)
    kept.clear()
    growth = [f for f in findings if f.rule == "GPUMemoryIncrease"]
    assert growth and growth[0].tensors == ("process",)
    assert codes(findings) - {"GPUMemoryIncrease"} <= allowed_noise(run), [f.message for f in findings]
    rss = run.system(["proc_rss_bytes"])["value"].to_numpy()
    assert rss[-1] - rss[0] > 300e6


def test_a_stored_run_replays_its_profiler_records_to_the_same_rules(tmp_path):
    """`gradprobe check` / RuleEngine.replay(run.records()): system samples, phases and the loader
    configuration come back from the store in time order and the profiler rules judge them again."""
    findings, run = train(tmp_path / "run", DataLoader(SleepyDataset(), batch_size=4))
    records = list(run.records())
    phases = [r for r in records if isinstance(r, PhaseRecord)]
    samples = [r for r in records if isinstance(r, SystemRecord)]
    assert len(phases) == len(run.phases()) and [r.step for r in phases] == sorted(r.step for r in phases)
    assert len(samples) == run.system()["time"].nunique() and all(s.values["host"] for s in samples)
    assert [r.num_workers for r in records if isinstance(r, LoaderRecord)] == [0]
    replayed = RuleEngine(profiler_rules()).replay(records)
    assert "Dataloader" in codes(findings)
    again = next(f for f in replayed if f.rule == "Dataloader")
    assert again.evidence["wait_share"] > 0.5 and "num_workers=0" in again.message
