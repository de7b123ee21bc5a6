"""A real (tiny, 2-layer) BERT: tied MLM decoder, activations, token-id inputs, train and eval."""

from __future__ import annotations

import pytest
import torch

from gradprobe import Probe, open_run

transformers = pytest.importorskip("transformers")


def tiny_bert():
    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    return transformers.BertForMaskedLM(config)


def test_two_layer_bert_mlm_training_and_eval(tmp_path):
    model = tiny_bert()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    config = {"preset": "full", "token_ids": {"pad": 0, "unk": 100}}
    with Probe(model, opt, out_dir=tmp_path / "run", config=config) as probe:
        for _ in range(3):
            ids = torch.randint(1, 120, (4, 16))
            ids[:, 12:] = 0  # padding
            out = model(input_ids=ids, attention_mask=(ids != 0).long(), labels=ids)
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=out.loss)
        probe.set_mode("eval")
        model.eval()
        with torch.no_grad():
            ids = torch.randint(1, 120, (4, 16))
            probe.step(loss=model(input_ids=ids, labels=ids).loss)
    run = open_run(tmp_path / "run")
    grads = run.stats("grad")
    assert "cls.predictions.decoder.weight" not in set(grads.tensor)  # tied: counted once
    assert run.meta["aliases"]["cls.predictions.decoder.weight"] == "bert.embeddings.word_embeddings.weight"
    assert grads.groupby("step").size().tolist() == [len(run.tensors("grad"))] * 3
    acts = run.stats("activation")
    assert set(acts["mode"]) == {"train", "eval"}
    assert any(t.endswith("intermediate.intermediate_act_fn:input") for t in acts.tensor)
    inputs = run.inputs()
    pad = inputs[(inputs.token == "pad") & (inputs["mode"] == "train")]
    assert pad["count"].tolist() == [16, 16, 16] and pad.total.tolist() == [64, 64, 64]
    assert run.scalars(["loss"], mode="eval").step.tolist() == [0]
