"""Pretraining data: documents from text files and from reviews, NSP pairs, and BERT's masking."""

from __future__ import annotations

import random

import pytest
import torch

from gradprobe.workflows.corpus import mask_tokens, review_documents, sentence_pairs, text_documents
from gradprobe.workflows.data import DataError


def test_masking_selects_15_percent_and_splits_80_10_10():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (400, 500))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    masked, labels = mask_tokens(ids, special, mask_id=103, vocab_size=30522, generator=generator)
    chosen = labels != -100
    assert not chosen[:, 0].any() and (labels[chosen] == ids[chosen]).all()
    assert chosen.float().mean().item() == pytest.approx(0.15 * 499 / 500, abs=0.003)
    n = chosen.sum().item()
    as_mask = (masked[chosen] == 103).sum().item() / n
    kept = (masked[chosen] == ids[chosen]).sum().item() / n
    assert as_mask == pytest.approx(0.8, abs=0.01) and kept == pytest.approx(0.1 + 0.1 / 30522 * 1000, abs=0.01)
    assert (masked[~chosen] == ids[~chosen]).all()


def test_text_files_one_sentence_per_line_blank_line_between_documents(tmp_path):
    (tmp_path / "a.txt").write_text("First one.\nSecond one.\n\n\nOther doc.\nAnd more.\nEnd.\n")
    assert text_documents(tmp_path / "a.txt") == [["First one.", "Second one."], ["Other doc.", "And more.", "End."]]
    (tmp_path / "b.txt").write_text("Third doc.\n")
    assert len(text_documents(tmp_path)) == 3
    (tmp_path / "one.txt").write_text("Only.\nOne document.\n")
    with pytest.raises(DataError, match="one.txt: next-sentence prediction needs at least two documents"):
        text_documents(tmp_path / "one.txt")


def test_nsp_pairs_are_half_true_continuations_half_from_another_document():
    documents = [[f"d{d} s{i}" for i in range(5)] for d in range(6)]
    pairs = sentence_pairs(documents, 4000, random.Random(0))
    random_share = sum(p.is_random for p in pairs) / len(pairs)
    assert random_share == pytest.approx(0.5, abs=0.03)
    for p in pairs:
        doc, i = p.first.split()
        if p.is_random:
            assert not p.second.startswith(doc + " ")
        else:
            assert p.second == f"{doc} s{int(i[1:]) + 1}"


def test_review_documents_group_one_product_each():
    documents = review_documents(300, seed=0)
    assert len(documents) > 10 and all(len(d) >= 2 for d in documents)
