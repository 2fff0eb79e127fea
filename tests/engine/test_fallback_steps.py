"""Label steps of unparsed outputs at whole-word matches, and Table 6 over counted steps only
(docs/analyses.md, counted label steps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilabel_llm.core.traces import LabelStep
from multilabel_llm.data.label_steps import counted_steps
from multilabel_llm.engine.hf.attention import label_step_attention
from multilabel_llm.engine.label_tokens import detect_label_tokens
from multilabel_llm.engine.tracing import RawTrace, StopRule, fallback_spans, finalize
from tests.builders import tiny_model

LABELS = ["joy", "sadness", "admiration"]


@pytest.fixture(scope="module")
def tok():
    return tiny_model()[1]


def _finalize(tok, text):
    ids = tok(text, add_special_tokens=False).input_ids
    lt = detect_label_tokens(tok, LABELS, "json")
    raw = RawTrace(ids, np.zeros((len(ids), len(lt.forms)), dtype=np.float32))
    return finalize("x", raw, tok, lt, LABELS, "json", StopRule(tok, "json", ["Input:"]))


def test_fallback_spans_are_whole_words_in_text_order():
    text = 'Sadness? {"label": ["sadness", "joy" and ADMIRATION, none'
    assert fallback_spans(text, [*LABELS, "none"]) == [
        ("sadness", 0),  # case-insensitive, first match
        ("joy", text.index("joy")),
        ("admiration", text.index("ADMIRATION")),
        ("none", text.index("none")),
    ]
    # "ad" of sadness and "joyful" are not words of their own
    assert fallback_spans("joyful sadness", LABELS) == [("sadness", 7)]


def test_unparsed_output_places_labels_at_their_whole_word_tokens(tok):
    # no list bracket: unparseable. SmolLM2 writes sadness as "s", "ad", "ness", and "ad" is
    # admiration's first token: the old fallback put admiration at that fragment (step 6)
    text = '\n{"label": "sadness", "joy"} and admiration'
    tokens = [tok.decode([i]) for i in tok(text, add_special_tokens=False).input_ids]
    assert tokens[5:8] == ["s", "ad", "ness"] and tokens[-1] == " admiration"
    trace = _finalize(tok, text)
    assert not trace.parse_ok and trace.extra["fallback_labels"] == LABELS
    steps = [(s.step, s.label) for s in trace.label_steps]
    assert steps == [(5, "sadness"), (10, "joy"), (len(tokens) - 1, "admiration")]
    assert [tokens[k] for k, _ in steps] == ["s", "joy", " admiration"]
    # so every step is a label the text names: the analyses drop none of them
    counted = counted_steps(trace, LABELS, "json")
    assert counted.labels == ["sadness", "joy", "admiration"] and counted.n_unnamed == 0


def test_unparsed_output_naming_no_label_has_no_step(tok):
    # "sadnessjoy" is written with the first tokens of sadness ("s") and admiration ("ad"), and
    # ends in joy's: the old fallback made three steps of it; it names no label
    text = '\n{"label": "sadnessjoy"}'
    tokens = [tok.decode([i]) for i in tok(text, add_special_tokens=False).input_ids]
    assert tokens[5:9] == ["s", "ad", "ness", "joy"]
    trace = _finalize(tok, text)
    assert not trace.parse_ok and trace.label_steps == []


def _attention_traces(tok):
    parsed = _finalize(tok, '\n{"label": ["joy", "sadness", "joy"]}')  # a repeat of joy
    unparsed = _finalize(tok, '\n{"label": "sadness", "joy"}')
    # as traced before whole-word fallback steps: admiration at the "ad" fragment of sadness
    unparsed.label_steps.insert(1, LabelStep(6, "admiration"))
    parsed.id, unparsed.id = "p", "u"
    return [parsed, unparsed]


def test_attention_rows_follow_the_counted_steps(tok):
    model = tiny_model()[0]
    traces = _attention_traces(tok)
    assert [s.label for s in traces[0].label_steps] == ["joy", "sadness", "joy"]
    assert [s.label for s in traces[1].label_steps] == ["sadness", "admiration", "joy"]
    prompts = {t.id: tok("Input: hello there\n").input_ids for t in traces}
    frame = label_step_attention(model, tok, prompts, traces, LABELS, "json")
    # p: sadness only (the repeated joy is no step); u: joy only (admiration at the "ad" of
    # sadness is not named there). step stays 0-based: 1 is the second counted label (r = 2)
    assert frame[["id", "step", "label"]].values.tolist() == [
        ["p", 1, "sadness"],
        ["u", 1, "joy"],
    ]
    assert frame["first_count"].tolist() == [1, 1]  # one label generated before
    # without the label list each trace's own step labels are the candidates: same steps
    pd.testing.assert_frame_equal(frame, label_step_attention(model, tok, prompts, traces))
    # the same numbers as on traces holding only their counted steps
    for trace in traces:
        trace.label_steps = list(counted_steps(trace, LABELS, "json").steps)
    clean = label_step_attention(model, tok, prompts, traces, LABELS, "json")
    pd.testing.assert_frame_equal(frame, clean)
