"""The host-bound step (issue 22): what the probe costs where a fixed per-step cost cannot hide.

A BERT-base-shaped model (BertForPreTraining: 12 layers, 206 parameter tensors) with a tiny hidden
size, batch 2 x 16, one torch thread, MLM + NSP: each op takes a few microseconds, so the step is
dominated by Python and dispatch, as a fast GPU's step is by kernel launches.

Two identical models train side by side, one watched, one not; single steps alternate (ABBA order, so
that neither always runs first) after a warm-up past the presets' dense start, and the overhead is
the median over pairs of (watched step / plain step). Beside it, per watched step:
- the training thread's own time in gradprobe, as the probe accounts it (`gradprobe/overhead_ms`),
  and independently as the difference of the training thread's CPU time between the two models;
- the CPU time of every gradprobe thread (consumer, store writer, profiler, actions, clock), read
  from their thread clocks over the measured pairs.

Run: python -m bench.host_bound [--preset default] [--pairs 200] [--compile]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

HIDDEN, LAYERS, VOCAB, BATCH, SEQ = 32, 12, 1000, 2, 16
WARMUP, PAIRS = 40, 200


def model(seed: int = 0) -> torch.nn.Module:
    from transformers import BertConfig, BertForPreTraining
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                        intermediate_size=4 * HIDDEN, max_position_embeddings=64)
    return BertForPreTraining(config)


def batches(count: int = 16, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(5, VOCAB, (BATCH, SEQ), generator=g)
        labels = torch.where(torch.rand(BATCH, SEQ, generator=g) < 0.15, ids, torch.full_like(ids, -100))
        out.append({"input_ids": ids, "labels": labels,
                    "next_sentence_label": torch.randint(0, 2, (BATCH,), generator=g)})
    return out


class Trainer:
    def __init__(self, net: torch.nn.Module, data: list[dict[str, torch.Tensor]], compiled: bool) -> None:
        self.net = net
        self.forward = torch.compile(net) if compiled else net
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
        self.data = data
        self.i = 0
        self.after_step: Any = None

    def step(self) -> tuple[float, float]:
        """(wall seconds, training-thread CPU seconds) of one training step."""
        batch = self.data[self.i % len(self.data)]
        self.i += 1
        wall, cpu = time.perf_counter(), time.thread_time()
        loss = self.forward(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.after_step is not None:
            self.after_step(loss)
        return time.perf_counter() - wall, time.thread_time() - cpu


def gradprobe_threads_cpu() -> float:
    """CPU seconds of every live gradprobe thread so far (thread clocks: any thread may read them)."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith("gradprobe") and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, ProcessLookupError):
                pass  # ended meanwhile
    return total


def measure(preset: str, pairs: int = PAIRS, warmup: int = WARMUP, compiled: bool = False,
            out_dir: Path | None = None) -> dict[str, Any]:
    import gradprobe

    torch.set_num_threads(1)
    data = batches()
    watched, plain = Trainer(model(), data, compiled), Trainer(model(), data, compiled)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = (out_dir or Path(scratch)) / f"host-bound-{preset}"
        probe = gradprobe.Probe(watched.net, watched.optimizer, out_dir=run_dir, config=preset,
                                exist="overwrite")
        watched.after_step = lambda loss: probe.step(loss=loss)
        for _ in range(warmup):
            watched.step()
            plain.step()
        threads_before = gradprobe_threads_cpu()
        first_measured = probe.current_step()
        a_wall, b_wall, a_cpu, b_cpu, ratios = [], [], [], [], []
        for i in range(pairs):
            if i % 2 == 0:
                (wa, ca), (wb, cb) = watched.step(), plain.step()
            else:
                (wb, cb), (wa, ca) = plain.step(), watched.step()
            a_wall.append(wa)
            b_wall.append(wb)
            a_cpu.append(ca)
            b_cpu.append(cb)
            ratios.append(wa / wb)
        threads_cpu = gradprobe_threads_cpu() - threads_before
        probe.close()
        run = gradprobe.open_run(run_dir)
        own = run.scalars(["gradprobe/overhead_ms"])
        own = own[own.step >= first_measured].value
        findings = len(run.events("finding"))
    tensors = sum(1 for _ in watched.net.parameters())
    return {
        "preset": preset, "compiled": compiled, "tensors": tensors, "pairs": pairs, "warmup": warmup,
        "step_ms_plain": statistics.median(b_wall) * 1e3, "step_ms_watched": statistics.median(a_wall) * 1e3,
        "overhead_ratio": statistics.median(ratios),
        "own_ms_accounted_mean": float(own.mean()), "own_ms_accounted_median": float(own.median()),
        "own_ms_thread_cpu": (statistics.median(a_cpu) - statistics.median(b_cpu)) * 1e3,
        "other_threads_cpu_ms_per_step": threads_cpu / pairs * 1e3,
        "findings": findings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["minimal", "default", "full"])
    parser.add_argument("--pairs", type=int, default=PAIRS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    print(json.dumps(measure(args.preset, args.pairs, args.warmup, args.compile), indent=1))


if __name__ == "__main__":
    main()
