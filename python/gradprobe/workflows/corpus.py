"""Documents (lists of sentences) for BERT pretraining, and the MLM + NSP examples made from them.

A corpus is the generated reviews grouped by product (a document: a few reviews of one product), or
the user's text files: one sentence per line, a blank line between documents (BERT's own format).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import DataError
from .reviews import make_reviews

Document = list[str]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def review_documents(reviews: int, seed: int = 0, per_document: int = 6) -> list[Document]:
    """Generated reviews grouped by product, `per_document` reviews to a document, split into sentences."""
    by_product: dict[str, list[str]] = defaultdict(list)
    for review in make_reviews(reviews, seed=seed, balanced=False):
        by_product[review.product].extend(s for s in _SENTENCE_END.split(review.text) if s)
    documents = []
    for sentences in by_product.values():
        size = 2 * per_document  # about two sentences per review
        documents += [sentences[i:i + size] for i in range(0, len(sentences), size)]
    return [d for d in documents if len(d) >= 2]


def text_documents(path: str | Path) -> list[Document]:
    """A text file, or every *.txt file of a directory (sorted): one sentence per line, blank lines
    between documents."""
    path = Path(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"{path}: no such text file (or no *.txt file in that directory)")
    documents: list[Document] = []
    for file in files:
        current: Document = []
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                current.append(line.strip())
            elif current:
                documents.append(current)
                current = []
        if current:
            documents.append(current)
    if len(documents) < 2 or not any(len(d) >= 2 for d in documents):
        raise DataError(f"{path}: next-sentence prediction needs at least two documents and one with two "
                        f"sentences or more (found {len(documents)} documents); separate documents by blank lines")
    return documents


@dataclass(frozen=True)
class SentencePair:
    first: str
    second: str
    is_random: int  # 0: `second` follows `first` in its document; 1: taken from another document


def sentence_pairs(documents: Sequence[Document], count: int, rng: random.Random) -> list[SentencePair]:
    """NSP pairs: half the time the true next sentence, half a random sentence of another document."""
    starts = [(d, i) for d, doc in enumerate(documents) for i in range(len(doc) - 1)]
    if not starts or len(documents) < 2:
        raise DataError("next-sentence prediction needs two documents or more, one with two sentences or more")
    pairs = []
    for _ in range(count):
        d, i = rng.choice(starts)
        if rng.random() < 0.5:
            pairs.append(SentencePair(documents[d][i], documents[d][i + 1], 0))
        else:
            other = rng.choice([k for k in range(len(documents)) if k != d])
            pairs.append(SentencePair(documents[d][i], rng.choice(documents[other]), 1))
    return pairs


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, probability: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: `probability` of the non-special tokens are selected; of those 80% become
    [MASK], 10% a random token, 10% stay. Returns (masked inputs, labels: -100 where not selected)."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special
    if not chosen.any() and not special.all():  # the MLM loss needs one token; a tiny batch may draw none
        chosen.view(-1)[(~special).view(-1).nonzero()[0]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    draw = torch.rand(input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[chosen & (draw < 0.8)] = mask_id
    random_positions = chosen & (draw >= 0.8) & (draw < 0.9)
    masked[random_positions] = torch.randint(vocab_size, input_ids.shape, generator=generator)[random_positions]
    return masked, labels
