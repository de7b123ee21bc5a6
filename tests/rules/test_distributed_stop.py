"""StopTraining in a 2-process gloo run: every rank stops on the same step."""

from __future__ import annotations

import socket

import torch.multiprocessing as mp

from . import dist_worker


def test_two_gloo_ranks_stop_on_the_same_step(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(dist_worker.run, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    stops = [int((tmp_path / f"rank{r}.txt").read_text()) for r in range(2)]
    assert stops[0] == stops[1] and 3 <= stops[0] < 40, stops
