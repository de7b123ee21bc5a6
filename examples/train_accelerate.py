"""accelerate with gradprobe (one process here; `accelerate launch` for several), tiny BERT, CPU:

    python examples/train_accelerate.py --out runs/accelerate
    accelerate launch --num_processes 2 --cpu examples/train_accelerate.py --out runs/accelerate-2
"""

import argparse

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForSequenceClassification

from gradprobe.actions import StopTraining
from gradprobe.integrations.accelerate import attach, end_step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/accelerate")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    accelerator = Accelerator(gradient_accumulation_steps=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(1, 100, (16,), generator=g), "labels": torch.randint(0, 2, (), generator=g)}
            for _ in range(16 * args.steps)]
    model, optimizer, loader = accelerator.prepare(model, optimizer, DataLoader(data, batch_size=8))
    probe = attach(accelerator, model, optimizer, out_dir=args.out, actions=[StopTraining()])
    steps = 0
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                steps += 1
            optimizer.step()
            optimizer.zero_grad()
        if end_step(accelerator, probe, loss) or steps == args.steps:
            break
    probe.close()
    if accelerator.is_main_process:
        print(f"gradprobe run: {args.out} ({len(probe.findings)} findings)")


if __name__ == "__main__":
    main()
