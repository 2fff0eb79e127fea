"""Unary / binary breakdown prompts and their batched shared-prefix scoring."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from multilabel_llm.engine.breakdown import (
    BINARY_HEADER,
    SCORERS,
    UNARY_HEADER,
    binary_prefix,
    binary_query,
    score_binary,
    score_binary_reversed,
    score_unary,
    unary_prefix,
    unary_query,
)
from multilabel_llm.engine.label_tokens import answer_tokens
from multilabel_llm.methods.breakdown import estimate_binary
from tests.builders import tiny_model as tiny
from tests.builders import toy_dataset


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


def test_both_orders_end_to_end_on_a_tiny_model():
    model, tok = tiny()
    ds = toy_dataset(n_queries=2)
    ids = ds.split("dev")["id"].tolist()
    assert SCORERS["binary_reversed"] is score_binary_reversed
    one = score_binary(model, tok, ds, ids, batch_size=16)
    rev = SCORERS["binary_reversed"](model, tok, ds, ids, batch_size=16)
    pairs = list(itertools.combinations([*ds.labels, "none"], 2))
    assert list(zip(rev["label_a"], rev["label_b"], strict=True))[:28] == [(b, a) for a, b in pairs]
    # the same header and demos: a reversed row is the plain forward of the swapped query
    prefix = binary_prefix(ds.split("train"), ds.labels, 10, 0)
    row = rev.iloc[5]
    text = ds.examples.set_index("id").loc[row.id, "text"]
    ref = _plain(model, tok, prefix + binary_query(text, row.label_a, row.label_b), ["a", "b"])
    np.testing.assert_allclose([row.logit_a, row.logit_b], ref, atol=1e-4)
    both = pd.concat([one, rev], ignore_index=True)
    base = {"l2": 0.01, "optimizer": "lbfgs"}
    fits = {
        combine: estimate_binary(
            {**base, "orders": "both", "combine": combine}, ids, ds.labels, True, both
        )
        for combine in ("average", "position_term")
    }
    paper = estimate_binary(base, ids, ds.labels, True, one)
    for fit in [paper, *fits.values()]:
        assert fit.frame["id"].tolist() == ids and fit.scores.shape == (2, 8)
        assert fit.bias["n_examples"] == 2
    # the bias summary is over the prompts each variant asked
    assert paper.bias["mean_p_a"] == pytest.approx(one["p_a"].mean())
    assert paper.bias["share_a"] == pytest.approx((one["p_a"] > 0.5).mean())
    assert fits["average"].bias["mean_p_a"] == pytest.approx(both["p_a"].mean())
    assert fits["average"].bias["n_prompts"] == 2 * 2 * 28
    assert np.isnan(fits["average"].bias["position_term"])
    # the fitted home advantage follows the model's own preference for "a"
    h = fits["position_term"].position_term
    assert h.shape == (2,) and np.isfinite(h).all()
    assert np.sign(h.mean()) == np.sign(both["p_a"].mean() - 0.5)
    assert fits["position_term"].bias["position_term"] == pytest.approx(h.mean())
    # averaging the two orders by hand gives the same distribution as combine: average
    merged = one.merge(
        rev, left_on=["id", "label_a", "label_b"], right_on=["id", "label_b", "label_a"]
    )
    averaged = merged.assign(p_a=(merged["p_a_x"] + 1 - merged["p_a_y"]) / 2)
    averaged = averaged.rename(columns={"label_a_x": "label_a", "label_b_x": "label_b"})
    by_hand = estimate_binary(
        base, ids, ds.labels, True, averaged[["id", "label_a", "label_b", "p_a"]]
    )
    np.testing.assert_allclose(
        by_hand.frame[ds.labels].to_numpy(), fits["average"].frame[ds.labels].to_numpy(), atol=1e-6
    )


def _label_traces(tok, labels):
    """Traces naming two or three labels each (Table 6 needs a second counted label)."""
    from multilabel_llm.engine.label_tokens import detect_label_tokens
    from multilabel_llm.engine.tracing import RawTrace, StopRule, finalize

    lt = detect_label_tokens(tok, labels, "json")
    traces = []
    for k, text in enumerate(
        [
            '\n{"label": ["joy", "sadness"]}',
            '\n{"label": ["fear", "anger", "joy"]}',
            '\n{"label": ["optimism", "joy", "surprise"]}',
        ]
    ):
        ids = tok(text, add_special_tokens=False).input_ids
        raw = RawTrace(ids, np.zeros((len(ids), len(lt.forms)), dtype=np.float32))
        trace = finalize(f"t{k}", raw, tok, lt, labels, "json", StopRule(tok, "json", []))
        traces.append(trace)
    return traces


@pytest.mark.parametrize("shared", [True, False], ids=["shared-prefix", "no-prefix"])
def test_attention_pass_batched_equals_one_forward_per_example(shared):
    from multilabel_llm.engine.hf.attention import label_step_attention

    model, tok = tiny()
    ds = toy_dataset()
    traces = _label_traces(tok, ds.labels)
    head = 'Classify: joy, fear, anger.\nInput: a day\n{"label": ["joy"]}\nInput: '
    queries = ["so happy and sad", "scared", "hope it all works out for us, wow"]
    prompts = {
        t.id: tok((head if shared else f"{k} ") + q + "\n").input_ids
        for k, (t, q) in enumerate(zip(traces, queries, strict=True))
    }
    plain = label_step_attention(model, tok, prompts, traces, ds.labels, "json", batched=False)
    fast = label_step_attention(model, tok, prompts, traces, ds.labels, "json", batch_size=2)
    assert len(plain) == 1 + 2 + 2  # every counted label after the first
    cols = ["id", "step", "label", "input_count", "label_count", "first_count"]
    pd.testing.assert_frame_equal(fast[cols], plain[cols])
    masses = ["input_mass", "label_mass", "first_mass"]
    np.testing.assert_allclose(fast[masses], plain[masses], atol=1e-5)
    assert (plain["first_mass"] > 0).all()
