"""The Hugging Face Trainer with gradprobe's callback, on a tiny BERT and random tokens (CPU, seconds):

    python examples/train_hf_trainer.py --out runs/hf
    gradprobe show runs/hf
"""

import argparse

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from gradprobe.integrations.transformers import GradprobeCallback


def dataset(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(1, 100, (16,), generator=g), "labels": torch.randint(0, 2, (), generator=g)}
            for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/hf-trainer")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=64))
    training = TrainingArguments(output_dir=f"{args.out}-trainer", max_steps=args.steps, per_device_train_batch_size=8,
                                 gradient_accumulation_steps=2, max_grad_norm=1.0, logging_steps=1,
                                 eval_strategy="steps", eval_steps=10, save_strategy="no", report_to=[],
                                 use_cpu=True, disable_tqdm=True)
    callback = GradprobeCallback(out_dir=args.out)  # default rules; add actions=[StopTraining()] to stop on errors
    Trainer(model=model, args=training, train_dataset=dataset(512, 1), eval_dataset=dataset(32, 2),
            callbacks=[callback]).train()
    print(f"gradprobe run: {args.out} ({len(callback.probe.findings)} findings)")


if __name__ == "__main__":
    main()
