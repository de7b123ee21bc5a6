"""A slow rank in a 2-process gloo run: LoadBalancing names the phase and the rank, on both ranks,
and no other profiler rule fires."""

from __future__ import annotations

import json
import socket

import torch.multiprocessing as mp

from gradprobe import open_run

from . import balance_worker
from .helpers import allowed_noise


def test_a_slow_rank_is_load_balancing_skew_naming_phase_and_rank(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(balance_worker.run, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    run = open_run(tmp_path / "run")
    noise = allowed_noise(run)
    for rank in (0, 1):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        balance = [f for f in found if f["rule"] == "LoadBalancing"]
        assert balance and balance[0]["tensors"] == ["forward", "rank1"], found
        assert balance[0]["evidence"]["slow_seconds"] >= balance_worker.SLOW_FORWARD
        assert {f["rule"] for f in found} - {"LoadBalancing"} <= noise, found
    phases = run.phases()
    assert set(phases["rank"]) == {0, 1} and len(phases) == 120
    assert set(run.system()["rank"]) == {0, 1}
