"""Estimators 1 and 2 of *Token-Level Marginalization for Multi-Label LLM Classifiers*
(token probability, marginal probability at a fixed place): hand-computed on crafted traces,
and the trace fields they read (generated-token probability, label-completing step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multilabel_llm.core.traces import LabelStep, Trace, TraceMeta
from multilabel_llm.engine.hf.tracer import TraceEngine, reference_trace
from multilabel_llm.engine.label_tokens import detect_label_tokens
from multilabel_llm.engine.tracing import RawTrace, StopRule, finalize, label_end_char
from multilabel_llm.methods.estimators import estimate
from multilabel_llm.methods.token_level import token_level
from tests.builders import tiny_model

LABELS = ["joy", "fear", "anger"]
META = TraceMeta(labels=LABELS, info={"label_format": "json"})


def _trace(tid, labels, steps, ends, gen_probs, text=None):
    n_scores = len(LABELS) + 1
    return Trace(
        id=tid,
        text_out=text or '{"label": [' + ", ".join(f'"{lab}"' for lab in labels) + "]}",
        pred_labels=list(dict.fromkeys(labels)),
        label_steps=[LabelStep(s, lab) for s, lab in zip(steps, labels, strict=True)],
        step_logits=[[0.0] * n_scores for _ in gen_probs],
        step_probs=[[1.0 / n_scores] * n_scores for _ in gen_probs],
        extra={
            "gen_probs": list(gen_probs),
            "label_ends": [
                {"label": lab, "start": s, "end": e}
                for lab, s, e in zip(labels, steps, ends, strict=True)
            ],
        },
    )


# joy starts at step 2 and is completed by step 3 (p 0.6); fear is one token at step 5 (p 0.4)
GEN_PROBS = [0.9, 0.8, 0.5, 0.6, 0.7, 0.4, 0.95]
TWO = _trace("a", ["joy", "fear"], [2, 5], [3, 5], GEN_PROBS)
NOTHING = _trace("b", [], [], [], [0.9, 0.3], text='{"label": []}')


def test_token_probability_is_the_completing_tokens_probability():
    frame = token_level(META, [TWO, NOTHING], ["a", "b"], LABELS, True, "token_probability")
    assert frame.set_index("id").loc["a"].tolist() == pytest.approx([0.6, 0.4, 0.0])
    assert frame.set_index("id").loc["b"].tolist() == [0.0, 0.0, 0.0]


def test_marginal_fixed_place_multiplies_in_output_order():
    frame = token_level(META, [TWO], ["a"], LABELS, True, "marginal_fixed_place")
    # joy: 0.6; fear: 0.6 * 0.4 (the label sequence must reach joy first); anger never named
    assert frame.iloc[0][LABELS].tolist() == pytest.approx([0.6, 0.24, 0.0])
    # the order matters: fear first, then joy
    rev = _trace("r", ["fear", "joy"], [2, 5], [2, 6], [0.9, 0.8, 0.5, 0.6, 0.7, 0.4, 0.95])
    frame = token_level(META, [rev], ["r"], LABELS, True, "marginal_fixed_place")
    assert frame.iloc[0][LABELS].tolist() == pytest.approx([0.5 * 0.95, 0.5, 0.0])


def test_repeated_label_counts_once_and_epsilon_floor():
    rep = _trace("c", ["joy", "joy"], [1, 3], [1, 3], [0.9, 0.5, 0.7, 0.2])
    frame = estimate(
        "marginal_fixed_place",
        {"epsilon": 0.01},
        ["c"],
        LABELS,
        True,
        traces=(META, [rep]),
    )
    # the repeat is not a counted step: its 0.2 never enters the product
    assert frame.iloc[0][LABELS].tolist() == pytest.approx([0.5, 0.01, 0.01])


def test_old_traces_without_the_fields_fail_clearly():
    old = _trace("a", ["joy"], [2], [3], GEN_PROBS)
    old.extra = {}
    with pytest.raises(ValueError, match=r"gen_probs.*rerun extract_traces"):
        estimate("token_probability", {}, ["a"], LABELS, True, traces=(META, [old]), source="x")


def test_single_label_rows_sum_to_one():
    frame = token_level(META, [TWO, NOTHING], ["a", "b"], LABELS, False, "token_probability")
    values = frame[LABELS].to_numpy()
    np.testing.assert_allclose(values.sum(1), 1.0)
    np.testing.assert_allclose(values[0], [0.6, 0.4, 0.0])
    np.testing.assert_allclose(values[1], [1 / 3] * 3)  # nothing named: uniform


def test_label_end_char():
    text = '{"label": ["joy", "Fear", "caf\\u00e9"]}'
    assert label_end_char(text, "joy", text.index("joy"), "json") == text.index("joy") + 2
    assert label_end_char(text, "fear", text.index("Fear"), "json") == text.index("Fear") + 3
    start = text.index("caf")
    assert label_end_char(text, "café", start, "json") == text.index('"]}') - 1
    assert label_end_char("joy, fe\n", "fear", 5, "comma") == 6


@pytest.fixture(scope="module")
def tok():
    return tiny_model()[1]


def test_finalize_records_generated_probs_and_completing_steps(tok):
    labels = ["joy", "sadness", "admiration"]
    text = '\n{"label": ["sadness", "joy"]}'
    ids = tok(text, add_special_tokens=False).input_ids
    pieces = [tok.decode([i]) for i in ids]
    logprobs = np.log(np.linspace(0.1, 0.9, len(ids)))
    lt = detect_label_tokens(tok, labels, "json")
    raw = RawTrace(ids, np.zeros((len(ids), len(lt.forms)), np.float32), gen_logprobs=logprobs)
    trace = finalize("x", raw, tok, lt, labels, "json", StopRule(tok, "json"))
    np.testing.assert_allclose(trace.extra["gen_probs"], np.exp(logprobs), rtol=1e-6)
    ends = {e["label"]: e for e in trace.extra["label_ends"]}
    # the completing step's token holds the label's last character; earlier tokens do not
    for label in ("sadness", "joy"):
        end = ends[label]["end"]
        before = "".join(pieces[:end])
        upto = "".join(pieces[: end + 1])
        assert label in upto and label not in before
        assert ends[label]["start"] <= end
    # SmolLM2 writes sadness over several tokens: it completes after it starts
    assert ends["sadness"]["end"] > ends["sadness"]["start"]
    probs = token_level(
        TraceMeta(labels=labels, info={"label_format": "json"}),
        [trace],
        ["x"],
        labels,
        True,
        "token_probability",
    )
    expect = np.exp(logprobs[ends["sadness"]["end"]])
    assert probs.iloc[0]["sadness"] == pytest.approx(expect, rel=1e-6)


def test_engine_records_the_generated_tokens_full_vocabulary_logprob(tok):
    model = tiny_model()[0]
    labels = ["joy", "sadness"]
    lt = detect_label_tokens(tok, labels, "json")
    rule = StopRule(tok, "json")
    prefix = tok("Classify: joy or sadness.\nInput: a\n", add_special_tokens=False).input_ids
    prompts = [prefix + tok("Input: b\n", add_special_tokens=False).input_ids]
    engine = TraceEngine(model, tok, lt, rule, max_new_tokens=5, batch_size=1)
    engine.set_prefix(prefix)
    (raw,) = engine.run(prompts)
    ref, _ = reference_trace(model, tok, prompts[0], lt, rule, max_new_tokens=5)
    assert raw.gen_ids == ref.gen_ids and len(raw.gen_logprobs) == len(raw.gen_ids)
    np.testing.assert_allclose(raw.gen_logprobs, ref.gen_logprobs, atol=1e-4)
    # and it is the log-softmax over the whole vocabulary at the greedy token
    with torch.inference_mode():
        logits = model(torch.tensor([prompts[0]])).logits[0, -1].float()
    first = torch.log_softmax(logits, -1)[raw.gen_ids[0]].item()
    assert raw.gen_logprobs[0] == pytest.approx(first, abs=1e-4)
    assert raw.gen_logprobs[0] == pytest.approx(torch.log_softmax(logits, -1).max().item())
