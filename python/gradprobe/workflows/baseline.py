"""The built-in baseline: a bag-of-n-grams linear classifier (the fastText / BlazingText idea).

Words and word bigrams are hashed into a fixed number of buckets, their embeddings averaged, and a
softmax layer classifies the average. It trains in seconds on a CPU and knows nothing of word order
beyond bigrams: the contrast with a fine-tuned transformer on the same split.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .metrics import ClassificationMetrics, classification_metrics

_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class BaselineConfig:
    buckets: int = 2**18
    dim: int = 32
    epochs: int = 8
    lr: float = 0.05
    batch_size: int = 32
    seed: int = 0


@dataclass(frozen=True)
class BaselineResult:
    metrics: ClassificationMetrics
    seconds: float


def ngram_ids(text: str, buckets: int) -> list[int]:
    """Hashed ids of the lower-cased words and word bigrams (a stable hash: runs are reproducible)."""
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return [zlib.crc32(g.encode()) % buckets for g in grams] or [0]


class NgramClassifier(torch.nn.Module):
    def __init__(self, buckets: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding = torch.nn.EmbeddingBag(buckets, dim, mode="mean", sparse=True)  # a batch touches few rows
        self.output = torch.nn.Linear(dim, num_classes)
        torch.nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.output(self.embedding(ids, offsets))


def train_baseline(train_texts: Sequence[str], train_labels: Sequence[int], test_texts: Sequence[str],
                   test_labels: Sequence[int], num_classes: int,
                   config: BaselineConfig = BaselineConfig()) -> BaselineResult:
    """Trains on the training split and reports accuracy and macro F1 on the test split."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny sparse batches: more threads only wait for each other on a busy machine
    try:
        return _train(train_texts, train_labels, test_texts, test_labels, num_classes, config)
    finally:
        torch.set_num_threads(threads)


def _train(train_texts: Sequence[str], train_labels: Sequence[int], test_texts: Sequence[str],
           test_labels: Sequence[int], num_classes: int, config: BaselineConfig) -> BaselineResult:
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = NgramClassifier(config.buckets, config.dim, num_classes)
    optimizers = [torch.optim.SparseAdam(model.embedding.parameters(), lr=config.lr),
                  torch.optim.Adam(model.output.parameters(), lr=config.lr)]
    encoded = [ngram_ids(t, config.buckets) for t in train_texts]
    labels = torch.tensor(list(train_labels))
    for _ in range(config.epochs):
        order = torch.randperm(len(encoded), generator=generator).tolist()
        for i in range(0, len(order), config.batch_size):
            batch = order[i:i + config.batch_size]
            ids, offsets = _pack([encoded[j] for j in batch])
            loss = torch.nn.functional.cross_entropy(model(ids, offsets), labels[batch])
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
    with torch.no_grad():
        ids, offsets = _pack([ngram_ids(t, config.buckets) for t in test_texts])
        predictions = model(ids, offsets).argmax(-1).numpy()
    metrics = classification_metrics(np.asarray(test_labels), predictions, num_classes)
    return BaselineResult(metrics, time.perf_counter() - started)


def _pack(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = np.cumsum([0] + [len(s) for s in sequences[:-1]])
    return torch.tensor([i for s in sequences for i in s]), torch.tensor(offsets)
