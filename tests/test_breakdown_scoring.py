"""Unary / binary breakdown prompts and their batched shared-prefix scoring."""

import itertools

import numpy as np
import torch

from multilabel_llm.engine.breakdown import (
    BINARY_HEADER,
    UNARY_HEADER,
    binary_prefix,
    binary_query,
    score_binary,
    score_unary,
    unary_prefix,
    unary_query,
)
from multilabel_llm.engine.label_tokens import answer_tokens
from multilabel_llm.engine.testing import tiny_model as tiny
from multilabel_llm.engine.testing import toy_dataset


def test_prompt_text_matches_table3():
    assert unary_query("i want to hate you", "normal") == (
        "Question: i want to hate you\nLabel: normal\nIs the label reasonable:"
    )
    assert binary_query("q", "proportionality", "loyalty") == (
        "Question: q\na. proportionality\nb. loyalty\nCorrect Label:"
    )
    ds = toy_dataset()
    up = unary_prefix(ds.split("train"), ds.labels, 10, 0)
    assert up.startswith(UNARY_HEADER) and up.count("Is the label reasonable: ") == 10
    assert up.count(": reasonable\n") == 5 and up.count(": unreasonable\n") == 5
    bp = binary_prefix(ds.split("train"), ds.labels, 10, 0)
    assert bp.startswith(BINARY_HEADER) and bp.count("Correct Label: ") == 10
    assert up == unary_prefix(ds.split("train"), ds.labels, 10, 0)  # seeded


def _plain(model, tok, prompt, answers):
    ids = torch.as_tensor([tok(prompt).input_ids])
    with torch.inference_mode():
        logits = model(ids).logits[0, -1].float().numpy()
    lt = answer_tokens(tok, answers)
    return lt.reduce(logits[lt.form_ids][None])[0]


def test_unary_scores_equal_one_forward_per_prompt():
    model, tok = tiny()
    ds = toy_dataset(n_queries=2)
    ids = ds.split("dev")["id"].tolist()
    frame = score_unary(model, tok, ds, ids, batch_size=5)
    assert list(frame.columns) == [
        "id",
        "label",
        "p_reasonable",
        "logit_reasonable",
        "logit_unreasonable",
    ]
    assert len(frame) == 2 * 8 and set(frame["label"]) == {*ds.labels, "none"}
    prefix = unary_prefix(ds.split("train"), ds.labels, 10, 0)
    text = dict(zip(ds.examples["id"], ds.examples["text"], strict=True))
    for row in frame.iloc[[0, 7, 9]].itertuples():
        ref = _plain(
            model,
            tok,
            prefix + unary_query(text[row.id], row.label),
            ["reasonable", "unreasonable"],
        )
        np.testing.assert_allclose([row.logit_reasonable, row.logit_unreasonable], ref, atol=1e-4)
        p = 1 / (1 + np.exp(ref[1] - ref[0]))
        assert abs(row.p_reasonable - p) < 1e-5


def test_binary_pairs_and_scores():
    model, tok = tiny()
    ds = toy_dataset(n_queries=1)
    ids = ds.split("dev")["id"].tolist()
    frame = score_binary(model, tok, ds, ids, batch_size=8)
    pairs = list(itertools.combinations([*ds.labels, "none"], 2))
    assert len(frame) == len(pairs) == 28
    assert list(zip(frame["label_a"], frame["label_b"], strict=True)) == pairs
    prefix = binary_prefix(ds.split("train"), ds.labels, 10, 0)
    row = frame.iloc[27]
    text = ds.examples.set_index("id").loc[ids[0], "text"]
    ref = _plain(model, tok, prefix + binary_query(text, row.label_a, row.label_b), ["a", "b"])
    np.testing.assert_allclose([row.logit_a, row.logit_b], ref, atol=1e-4)
    assert ((frame["p_a"] > 0) & (frame["p_a"] < 1)).all()
