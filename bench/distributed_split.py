"""Cost per rank of the gradient statistics split across DDP ranks, world size 2 against 1.

    .venv/bin/python bench/distributed_split.py [--params-millions 40] [--reps 15]

Per rank and step, the probe's work on gradients under distributed="replicated" is: read the table,
reduce the tensors this rank owns (the fused CPU pass), and exchange the rows (one all_gather of a
packed buffer on a gloo group). World size 1 reduces every tensor and exchanges nothing. Both are
timed here with the probe's own pieces on a BERT-base-shaped list of gradients; the median of
`--reps` steps is printed per rank, with the bytes each rank reads. The CPU pass uses one thread
per rank, so that two ranks on one machine do not contend for the same cores.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def gradients(millions: float) -> list[torch.nn.Parameter]:
    """BERT-base's layer shapes (hidden 768), as many layers as fit `millions` parameters."""
    torch.manual_seed(0)
    shapes = [(30522, 768), (512, 768), (768,), (768,)]
    layer = [(768, 768), (768,)] * 4 + [(3072, 768), (3072,), (768, 3072), (768,), (768,), (768,), (768,), (768,)]
    while sum(torch.Size(s).numel() for s in shapes) < millions * 1e6:
        shapes += layer
    params = [torch.nn.Parameter(torch.empty(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def run(rank: int, world_size: int, port: int, millions: float, reps: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    from gradprobe.probe.consumer import expand
    from gradprobe.probe.distributed import StatsExchange, balanced_owners
    from gradprobe.probe.tensor_table import TensorTable
    from gradprobe.stats import StatsComputer

    params = gradients(millions)
    table = TensorTable(params)
    computer = StatsComputer(1)
    owners = balanced_owners([p.numel() for p in params], world_size)
    mine = owners == rank
    exchange = StatsExchange(world_size) if world_size > 1 else None
    reduce_s, exchange_s = [], []
    for _ in range(reps + 2):
        dist.barrier()
        started = time.perf_counter()
        gathered = table.gather("grad")
        rows = gathered.rows[mine[gathered.rows]]
        result = computer.launch_table(gathered.table.subset(rows), histogram=True, backend="cpu").result()
        result_rows = torch.full((len(params),), -1, dtype=torch.int64).numpy()
        result_rows[rows] = range(len(rows))
        stats = expand(result, result_rows)
        reduced = time.perf_counter()
        if exchange is not None:
            exchange.combine(stats, result_rows >= 0, True, owners)
        done = time.perf_counter()
        reduce_s.append(reduced - started)
        exchange_s.append(done - reduced)
    read = sum(p.numel() * 4 for p, m in zip(params, mine) if m)
    record = {"world_size": world_size, "rank": rank, "tensors": int(mine.sum()), "of": len(params),
              "read_mb": read / 1e6, "reduce_ms": 1e3 * statistics.median(reduce_s[2:]),
              "exchange_ms": 1e3 * statistics.median(exchange_s[2:])}
    Path(out, f"ws{world_size}-rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


def launch(world_size: int, millions: float, reps: int, out: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(world_size, port, millions, reps, out), nprocs=world_size, join=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-millions", type=float, default=40.0)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        for world_size in (1, 2):
            launch(world_size, args.params_millions, args.reps, out)
        records = [json.loads(p.read_text()) for p in sorted(Path(out).glob("*.json"))]
    base = next(r for r in records if r["world_size"] == 1)
    print("| world size | rank | tensors reduced | MB read | reduce (ms) | exchange (ms) | total (ms) | x world size 1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in records:
        total = r["reduce_ms"] + r["exchange_ms"]
        print(f"| {r['world_size']} | {r['rank']} | {r['tensors']} of {r['of']} | {r['read_mb']:.0f} | "
              f"{r['reduce_ms']:.2f} | {r['exchange_ms']:.2f} | {total:.2f} | "
              f"{total / (base['reduce_ms'] + base['exchange_ms']):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
