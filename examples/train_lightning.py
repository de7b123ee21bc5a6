"""Lightning with gradprobe's callback, on a tiny BERT and random tokens (CPU, seconds):

    python examples/train_lightning.py --out runs/lightning
    gradprobe show runs/lightning
"""

import argparse

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForSequenceClassification

from gradprobe.integrations.lightning import GradprobeCallback


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                              num_attention_heads=2, intermediate_size=64))

    def training_step(self, batch, batch_idx):
        return self.model(**batch).loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.model(**batch).loss)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def loader(n: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    data = [{"input_ids": torch.randint(1, 100, (16,), generator=g), "labels": torch.randint(0, 2, (), generator=g)}
            for _ in range(n)]
    return DataLoader(data, batch_size=8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/lightning")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    callback = GradprobeCallback(out_dir=args.out)
    trainer = pl.Trainer(max_steps=args.steps, accumulate_grad_batches=2, gradient_clip_val=1.0, accelerator="cpu",
                         val_check_interval=10, limit_val_batches=2, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Classifier(), loader(1024, 1), loader(32, 2))
    print(f"gradprobe run: {args.out} ({len(callback.probe.findings)} findings)")


if __name__ == "__main__":
    main()
