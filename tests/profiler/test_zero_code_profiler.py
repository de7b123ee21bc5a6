"""`gradprobe run` (zero-code) gets the profiler too: system samples, step phases, the loader's
configuration and the time from the process's start to its first step."""

from __future__ import annotations

import os
import subprocess
import sys

from gradprobe import open_run

TRAIN = """
import time, torch
from torch.utils.data import DataLoader, TensorDataset
time.sleep(1.0)  # initialisation
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(2):
    for x, y in DataLoader(TensorDataset(torch.randn(48, 4), torch.randn(48, 1)), batch_size=6):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        time.sleep(0.05)
"""


def test_zero_code_run_records_system_samples_phases_and_startup(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    done = subprocess.run([sys.executable, "-m", "gradprobe.cli", "run", "--out", str(tmp_path / "run"), "--",
                           "python", str(path)], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    run = open_run(tmp_path / "run")
    assert {"cpu_util_pct", "proc_rss_bytes", "net_sent_Bps"} <= set(run.system()["metric"])
    phases = run.phases()
    assert len(phases) == 16 and phases["total"].notna().all()
    assert phases["data_wait"].iloc[2:].notna().all()  # batches after the probe attached
    profiler = run.meta["profiler"]
    assert profiler["first_step_seconds"] >= 1.0
    assert profiler["loaders"][0]["batch_size"] == 6
