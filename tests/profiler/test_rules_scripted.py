"""Each profiler rule on scripted records: the planted condition fires it at the expected sample
or step, the healthy trajectory does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradprobe import metrics as m
from gradprobe.records import LoaderRecord, PhaseRecord, RanksRecord, StartupRecord, SystemRecord
from gradprobe.rules import RuleEngine, all_rules, default, find
from gradprobe.rules.steps import Dataloader, LoadBalancing, MaxInitializationTime, StepOutlier, js_distance
from gradprobe.rules.system_usage import (
    BatchSize,
    CPUBottleneck,
    GPUMemoryIncrease,
    IOBottleneck,
    LowGPUUtilization,
    OverallSystemUsage,
)

PROFILER_RULES = ["CPUBottleneck", "IOBottleneck", "LowGPUUtilization", "BatchSize", "GPUMemoryIncrease",
                  "OverallSystemUsage", "StepOutlier", "Dataloader", "MaxInitializationTime", "LoadBalancing"]


def sample(i, cores=(10.0, 10.0), gpu=None, gpu_mem=None, iowait=0.0, rss_pct=1.0, node="n0"):
    values = {m.HOST: {m.CPU_UTIL: float(np.mean(cores)), m.CPU_IOWAIT: iowait, m.MEM_UTIL: 20.0},
              m.PROCESS: {m.PROC_RSS_UTIL: rss_pct, m.PROC_CPU: 50.0}}
    for index, value in enumerate(cores):
        values[m.core_device(index)] = {m.CPU_UTIL: value}
    if gpu is not None:
        values["gpu0"] = {m.GPU_UTIL: gpu, m.GPU_MEM_UTIL: 30.0 if gpu_mem is None else gpu_mem}
    return SystemRecord(float(i), node, 0, i, "train", values)


def run_system(rule, samples):
    engine = RuleEngine([rule])
    for s in samples:
        engine.on_system(s)
    return engine.findings


def phases(step, **values):
    base = {"data_wait": 0.001, "forward": 0.01, "backward": 0.02, "optimizer": 0.005, "gradprobe": 0.001}
    base.update(values)
    base.setdefault("total", sum(v for k, v in base.items() if k != "total") + 0.002)
    return PhaseRecord(step, "train", "n0", 0, float(step), base)


def test_every_profiler_rule_is_registered_and_all_but_batchsize_and_stepoutlier_are_default():
    names = {r.__name__ for r in all_rules()}
    assert set(PROFILER_RULES) <= names
    in_default = {type(r).__name__ for r in default()}
    assert in_default >= set(PROFILER_RULES) - {"BatchSize", "StepOutlier"}
    assert not in_default & {"BatchSize", "StepOutlier"}
    assert find("GP206") is StepOutlier


def test_cpu_bottleneck_with_gpus_needs_idle_gpus_and_a_busy_core():
    busy = [sample(i, cores=(95.0, 5.0), gpu=3.0) for i in range(10)]
    fired = run_system(CPUBottleneck(window=10, patience=0), busy)
    assert len(fired) == 1 and fired[0].step == 9 and "GPU" in fired[0].message
    assert not run_system(CPUBottleneck(window=10, patience=0), [sample(i, cores=(95.0, 5.0), gpu=50.0) for i in range(10)])
    half = [sample(i, cores=(95.0, 5.0) if i % 2 else (20.0, 5.0), gpu=3.0) for i in range(10)]
    assert not run_system(CPUBottleneck(window=10, patience=0), half)  # 50% is not more than 50%


def test_cpu_bottleneck_without_gpus_is_a_cpu_bound_step_not_a_gpu_claim():
    saturated = [sample(i, cores=(97.0, 93.0)) for i in range(10)]
    fired = run_system(CPUBottleneck(window=10, patience=0, cpu_only=True), saturated)
    assert len(fired) == 1 and "CPU-bound step" in fired[0].message and "GPU" not in fired[0].message
    assert not run_system(CPUBottleneck(window=10, patience=0), saturated)  # cpu_only is off by default
    # one core pinned (a Python loop) is not a saturated host
    assert not run_system(CPUBottleneck(window=10, patience=0, cpu_only=True),
                          [sample(i, cores=(100.0, 10.0)) for i in range(10)])
    # patience skips the first samples
    assert not run_system(CPUBottleneck(window=10, patience=5, cpu_only=True),
                          [sample(i, cores=(97.0, 93.0)) for i in range(14)])


def test_io_bottleneck():
    assert run_system(IOBottleneck(window=10, patience=0), [sample(i, iowait=70.0) for i in range(10)])
    assert not run_system(IOBottleneck(window=10, patience=0), [sample(i, iowait=70.0, gpu=90.0) for i in range(10)])
    assert not run_system(IOBottleneck(window=10, patience=0), [sample(i, iowait=10.0) for i in range(10)])


def test_low_gpu_utilization_low_and_fluctuating():
    low = run_system(LowGPUUtilization(window=20, patience=0), [sample(i, gpu=40.0) for i in range(20)])
    assert len(low) == 1 and "under-used" in low[0].message and low[0].tensors == ("gpu0",)
    wave = run_system(LowGPUUtilization(window=20, patience=0),
                      [sample(i, gpu=95.0 if i % 3 else 0.0) for i in range(20)])
    assert len(wave) == 1 and "fluctuates" in wave[0].message
    assert not run_system(LowGPUUtilization(window=20, patience=0), [sample(i, gpu=90.0) for i in range(20)])
    assert not run_system(LowGPUUtilization(window=20, patience=0), [sample(i) for i in range(20)])  # no GPU


def test_batch_size_needs_every_p95_below_70():
    assert run_system(BatchSize(window=10, patience=0), [sample(i, cores=(30.0, 30.0), gpu=40.0) for i in range(10)])
    assert not run_system(BatchSize(window=10, patience=0),
                          [sample(i, cores=(30.0, 30.0), gpu=40.0, gpu_mem=90.0) for i in range(10)])
    assert not run_system(BatchSize(window=10, patience=0), [sample(i, cores=(30.0, 30.0)) for i in range(10)])


def test_memory_increase_per_gpu_and_for_the_process_without_gpu():
    growing = [sample(i, gpu=90.0, gpu_mem=20.0 + i) for i in range(30)]
    fired = run_system(GPUMemoryIncrease(window=5, patience=0), growing)
    assert fired and fired[0].tensors == ("gpu0",) and fired[0].step == 14  # window means 22, 27, 32 (> 22 + 5)
    flat = [sample(i, gpu=90.0, gpu_mem=50.0 + (i % 3)) for i in range(30)]
    assert not run_system(GPUMemoryIncrease(window=5, patience=0), flat)
    cpu = run_system(GPUMemoryIncrease(window=5, patience=0), [sample(i, rss_pct=1.0 + 0.5 * i) for i in range(30)])
    assert cpu and cpu[0].tensors == ("process",) and "this process's memory" in cpu[0].message


def test_step_outlier_names_the_phase():
    rule = StepOutlier(n_outliers=3, patience=2)
    engine = RuleEngine([rule])
    for step in range(200):
        slow = step % 50 == 49
        engine.on_phases(phases(step, backward=0.2 if slow else 0.02 + 0.001 * (step % 3)))
    assert [f.tensors for f in engine.findings] == [("backward",)] and engine.findings[0].step == 199
    healthy = RuleEngine([StepOutlier(n_outliers=3, patience=2)])
    for step in range(200):
        healthy.on_phases(phases(step, forward=0.01 + 0.002 * (step % 5)))
    assert not healthy.findings


def test_step_outlier_finds_time_outside_every_phase():
    engine = RuleEngine([StepOutlier(n_outliers=2, patience=0)])
    for step in range(150):
        engine.on_phases(phases(step, total=0.3 if step % 50 == 10 else 0.04))
    assert [f.tensors for f in engine.findings] == [("other",)]


def loader(workers=0, pin=False, cuda=False, cpus=8):
    return LoaderRecord(0, "train", workers, pin, 32, None, cpus, 1, cuda)


def test_dataloader_wait_share_workers_and_pin_memory():
    engine = RuleEngine([Dataloader(window=10, patience=0)])
    engine.on_loader(loader(workers=0))
    assert not engine.findings  # num_workers=0 alone is no finding
    for step in range(10):
        engine.on_phases(phases(step, data_wait=0.05))
    assert len(engine.findings) == 1 and "num_workers=0" in engine.findings[0].message
    quiet = RuleEngine([Dataloader(window=10, patience=0)])
    quiet.on_loader(loader(workers=4))
    for step in range(30):
        quiet.on_phases(phases(step))
    assert not quiet.findings
    many = RuleEngine([Dataloader()])
    many.on_loader(loader(workers=32, cpus=8))
    many.on_loader(loader(workers=4, pin=False, cuda=True))
    assert [f.tensors for f in many.findings] == [("num_workers",), ("pin_memory",)]


def test_max_initialization_time():
    engine = RuleEngine([MaxInitializationTime()])
    engine.on_startup(StartupRecord(0, "train", 1199.0))
    assert not engine.findings
    engine.on_startup(StartupRecord(0, "train", 1300.0))
    assert len(engine.findings) == 1


def test_load_balancing_skew_and_utilisation_histograms():
    nan = math.nan
    record = RanksRecord(49, "train", {0: {"data_wait": 0.001, "forward": 0.01, "backward": 0.05, "optimizer": 0.01},
                                       1: {"data_wait": 0.001, "forward": 0.04, "backward": 0.02, "optimizer": nan}}, {})
    engine = RuleEngine([LoadBalancing()])
    engine.on_ranks(record)
    assert [f.tensors for f in engine.findings] == [("forward", "rank1")]
    even = RanksRecord(49, "train", {0: {"forward": 0.01}, 1: {"forward": 0.012}},
                       {"rank0/gpu0": [0] * 8 + [5, 5], "rank1/gpu1": [0] * 8 + [4, 6]})
    engine = RuleEngine([LoadBalancing()])
    engine.on_ranks(even)
    assert not engine.findings
    uneven = RanksRecord(99, "train", {}, {"rank0/gpu0": [0] * 9 + [10], "rank0/gpu1": [10] + [0] * 9})
    engine.on_ranks(uneven)
    assert [f.tensors for f in engine.findings] == [("rank0/gpu0", "rank0/gpu1")]
    assert js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    assert js_distance(np.array([3, 1]), np.array([6, 2])) == pytest.approx(0.0, abs=1e-9)


def test_overall_system_usage_never_fires_and_summarises_per_node_and_device():
    events = []
    engine = RuleEngine([OverallSystemUsage()], emit=events.append)
    for i in range(101):
        engine.on_system(sample(i, cores=(float(i), float(i)), gpu=float(i)))
        engine.on_system(sample(i, cores=(1.0, 1.0), node="n1"))
    engine.close()
    assert not engine.findings
    (summary,) = [e["summary"] for e in events if e["type"] == "rule_summary"]
    host = summary["n0/host/cpu_util_pct"]
    assert host["p50"] == pytest.approx(50) and host["p95"] == pytest.approx(95) and host["p99"] == pytest.approx(99)
    assert (host["min"], host["max"], host["samples"]) == (0.0, 100.0, 101)
    assert summary["n1/host/cpu_util_pct"]["max"] == 1.0 and "n0/gpu0/gpu_util_pct" in summary
    assert not any("/cpu0/" in key for key in summary)


@pytest.mark.parametrize("rule_type", [CPUBottleneck, GPUMemoryIncrease, StepOutlier, Dataloader, LowGPUUtilization])
def test_profiler_rule_state_round_trips(rule_type):
    rule = rule_type()
    for i in range(30):
        rule.on_system(sample(i, gpu=50.0, gpu_mem=float(i)))
        rule.on_phases(phases(i))
    copy = rule_type()
    copy.load_state_dict(rule.state_dict())
    assert copy.state_dict() == rule.state_dict()
