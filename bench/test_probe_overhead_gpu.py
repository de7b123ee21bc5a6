"""Probe overhead on a GPU training step (run by bench/gpu_check.sh): BERT-base MLM + NSP
pretraining, batch 32 x 128 tokens, bfloat16 autocast, fused AdamW; blocks with and without the
probe alternate, per preset. A block's time is its wall time between two synchronisations divided
by its steps: the host runs ahead of the GPU inside a block, so the probe's host work costs the
step only where it outlasts the GPU's queue, exactly as in training. gradprobe's own time on the
training thread is read from the run (gradprobe/overhead_ms).

GRADPROBE_BENCH_DEVICE=cpu with GRADPROBE_BENCH_MODEL=tiny runs the same code on the CPU (a check of
the benchmark itself, not a measurement)."""

from __future__ import annotations

import json
import os
import statistics
import time

import pytest
import torch

DEVICE = os.environ.get("GRADPROBE_BENCH_DEVICE", "cuda")
MODEL = os.environ.get("GRADPROBE_BENCH_MODEL", "bert_base")
BATCH, SEQ = (32, 128) if MODEL == "bert_base" else (4, 16)
STEPS = 31  # per block; the first step of a block is not timed
STEADY_FROM = 11  # own time past the default preset's dense start (steps 0..9)
ROUNDS = 3
SET = f"BERT-base MLM+NSP pretraining on GPU, batch {BATCH}x{SEQ}, bf16 autocast" if MODEL == "bert_base" else \
    "tiny BERT on CPU (benchmark self-check)"

pytestmark = pytest.mark.gpu if DEVICE == "cuda" else []


def setup():
    from transformers import BertConfig, BertForPreTraining

    from .tensor_sets import bert_config

    torch.manual_seed(0)
    config = bert_config("bert_base") if MODEL == "bert_base" else BertConfig(
        vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertForPreTraining(config).to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=DEVICE == "cuda")
    ids = torch.randint(0, config.vocab_size, (BATCH, SEQ), device=DEVICE)
    labels = ids.masked_fill(torch.rand(BATCH, SEQ, device=DEVICE) > 0.15, -100)  # MLM: 15% of tokens
    nsp = torch.randint(0, 2, (BATCH,), device=DEVICE)
    return model, optimizer, (ids, labels, nsp)


def train_step(model, optimizer, batch) -> torch.Tensor:
    ids, labels, nsp = batch
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=labels, next_sentence_label=nsp).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def block_ms(model, optimizer, batch, after_step=None) -> float:
    """Milliseconds per step over one block, synchronised only at its ends."""
    loss = train_step(model, optimizer, batch)
    if after_step is not None:
        after_step(loss)
    synchronize()
    start = time.perf_counter()
    for _ in range(STEPS - 1):
        loss = train_step(model, optimizer, batch)
        if after_step is not None:
            after_step(loss)
    synchronize()
    return (time.perf_counter() - start) * 1e3 / (STEPS - 1)


# The presets, and the default preset without the NaN/Inf origin (on a GPU it measures every
# module's output on every step, probe/nonfinite_origin.py): what that feature costs.
CONFIGS = {"minimal": "minimal", "default": "default", "full": "full",
           "default, no NaN origin": {"preset": "default", "nonfinite_origin": False}}


@pytest.mark.parametrize("preset", list(CONFIGS))
def test_probe_overhead_on_gpu_pretraining(tmp_path, results, preset):
    pytest.importorskip("transformers")
    import gradprobe

    model, optimizer, batch = setup()
    block_ms(model, optimizer, batch)  # warm-up: kernels, allocator, autotuning
    without, with_probe, own_ms = [], [], []
    for round_ in range(ROUNDS):
        without.append(block_ms(model, optimizer, batch))
        out = tmp_path / f"run{round_}"
        probe = gradprobe.Probe(model, optimizer, out_dir=out, config=CONFIGS[preset])
        with_probe.append(block_ms(model, optimizer, batch, after_step=lambda loss, probe=probe: probe.step(loss=loss)))
        probe.close()
        own_ms += gradprobe.open_run(out).scalars(["gradprobe/overhead_ms"]).value.tolist()[STEADY_FROM:]
    base, tool = statistics.median(without), statistics.median(with_probe)
    result = {"step_ms_without": base, "step_ms_with": tool, "overhead_pct": 100 * (tool / base - 1),
              "blocks_without": without, "blocks_with": with_probe,
              "own_ms_mean": statistics.fmean(own_ms), "own_ms_median": statistics.median(own_ms)}
    label = f"{SET} ({preset} preset)"
    results.add(set=label, method="without probe", ms=base, floor_ms=base, ratio=1.0)
    results.add(set=label, method="with gradprobe", ms=tool, floor_ms=base, ratio=tool / base,
                note=f"median of {ROUNDS} alternating blocks: {result['overhead_pct']:+.1f}%; own time on the "
                     f"training thread {result['own_ms_mean']:.2f} ms mean (median {result['own_ms_median']:.2f})")
    (tmp_path.parent / f"probe_overhead_gpu_{preset.replace(' ', '_').replace(',', '')}.json").write_text(json.dumps(result))
    print(json.dumps(result, indent=1))
