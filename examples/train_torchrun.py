"""DistributedDataParallel under torchrun with a gradprobe Probe: every rank writes its own
partition, the gradient statistics are split across the ranks, and a stop is agreed by all.

    torchrun --nproc-per-node 2 examples/train_torchrun.py --out runs/ddp          # one machine, CPU
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29500 examples/train_torchrun.py --out /shared/runs/ddp  # per node
(see docs/distributed.md: the run directory must be on a filesystem every node sees).
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import gradprobe
from gradprobe.actions import StopTraining


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/torchrun")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.GELU(),
                                                        torch.nn.Linear(128, 1)).to(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(dist.get_rank())  # each rank its own batches
    with gradprobe.Probe(model, optimizer, out_dir=args.out, actions=[StopTraining()]) as probe:
        for _ in range(args.steps):
            x = torch.randn(64, 32, generator=generator).to(device)
            loss = (model(x) - x.sum(1, keepdim=True).sin()).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            probe.step(loss=loss)
            if probe.should_stop:  # the same step on every rank
                break
        if dist.get_rank() == 0:
            print(f"gradprobe run: {args.out} (statistics {probe.distributed} across {dist.get_world_size()} ranks)")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
