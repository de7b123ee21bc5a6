"""The profiler's own cost (issue 12): the system sampler's CPU time per second of sampling at 100
and 500 ms (target: < 1% of one core at 500 ms), and the step-phase timer's cost per step against
the same loop without it, measured in one run alternating blocks. Printed and kept in
pytest-benchmark's extra_info; the figures go to bench/RESULTS.md by hand.

Sampler: a probe on an idle model (the training thread sleeps), so the process's CPU time is the
probe's threads'; the same probe with the sampler off is subtracted. It includes what each sample
causes: psutil's reads, the Arrow batch, the store's writes and the profiler rules.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

SECONDS = 6.0


def _cpu_per_second(tmp_path, name: str, interval: float | None) -> float:
    import gradprobe

    model = torch.nn.Linear(4, 1)
    with gradprobe.Probe(model, out_dir=tmp_path / name, config={"profiler": {"system_interval": interval}}):
        time.sleep(0.5)  # start-up work is not the steady cost
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(SECONDS)
        return (time.process_time() - cpu) / (time.perf_counter() - wall)


@pytest.mark.parametrize("interval", [0.1, 0.5])
def test_sampler_cpu_cost(benchmark, tmp_path, interval):
    rounds = []

    def measure() -> None:
        rounds.append((_cpu_per_second(tmp_path, f"on{len(rounds)}", interval),
                       _cpu_per_second(tmp_path, f"off{len(rounds)}", None)))

    benchmark.pedantic(measure, rounds=3, iterations=1)
    share = statistics.median(on - off for on, off in rounds)
    benchmark.extra_info.update(interval_s=interval, core_share_pct=100 * share,
                                with_sampler_pct=100 * statistics.median(on for on, _ in rounds),
                                without_sampler_pct=100 * statistics.median(off for _, off in rounds))
    print(f"\nsampler every {interval * 1e3:.0f} ms: {100 * share:.3f}% of one core "
          f"(probe threads with sampler {100 * statistics.median(on for on, _ in rounds):.3f}%, "
          f"without {100 * statistics.median(off for _, off in rounds):.3f}%)")


STEPS = 400


def _block(model, optimizer, loader, probe) -> float:
    started = time.perf_counter()
    for x, y in loader:
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
        probe.step()
    return (time.perf_counter() - started) / len(loader)


def test_step_timer_cost_per_step(benchmark, tmp_path):
    import gradprobe

    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(torch.randn(STEPS * 4, 8), torch.randn(STEPS * 4, 1)), batch_size=4)
    # Gradient statistics only every 1000 steps: the loop is the model, the loader and probe.step().
    base = {"preset": "minimal", "collections": {"gradients": {"schedule": {"every": 1000}}}}
    pairs = []

    def block(timer: bool) -> float:
        config = {**base, "profiler": {"system_interval": None, "phases": timer}}
        with gradprobe.Probe(model, optimizer, out_dir=tmp_path / f"run{len(pairs)}-{timer}", rules=[],
                             config=config) as probe:
            _block(model, optimizer, loader, probe)  # warm
            return _block(model, optimizer, loader, probe)

    def measure() -> None:
        pairs.append({timer: block(timer) for timer in (False, True)})

    benchmark.pedantic(measure, rounds=7, iterations=1)
    without = statistics.median(p[False] for p in pairs)
    with_timer = statistics.median(p[True] for p in pairs)
    cost = statistics.median(p[True] - p[False] for p in pairs)
    benchmark.extra_info.update(step_us_without=without * 1e6, step_us_with=with_timer * 1e6,
                                timer_us_per_step=cost * 1e6)
    print(f"\nstep timer: {cost * 1e6:.1f} us per step (step {without * 1e6:.0f} us without, "
          f"{with_timer * 1e6:.0f} us with: phases, loader patch and their rules' feed)")


def test_step_timer_bookkeeping_per_step(benchmark):
    """The timer's own work per step, alone: the six hook callbacks of a step (forward in and out,
    optimizer in and out, one loader wait) and the step end that builds its PhaseRecord."""
    from gradprobe.profiler.phases import StepTimer

    timer = StepTimer("node", 0, overhead=lambda: 0.0)
    step = [0]

    def one_step() -> None:
        now = time.perf_counter()
        timer.data_wait(now, now)
        timer.forward_begins()
        timer.forward_ends()
        timer.optimizer_begins()
        timer.optimizer_ends()
        timer.end_step(step[0], "train", 0.0)
        timer.ready.clear()
        step[0] += 1

    benchmark.pedantic(one_step, rounds=2000, iterations=10, warmup_rounds=100)
    timer.close()
    per_step = benchmark.stats.stats.median
    benchmark.extra_info.update(timer_us_per_step=per_step * 1e6)
    print(f"\nstep timer bookkeeping: {per_step * 1e6:.1f} us per step (median)")
