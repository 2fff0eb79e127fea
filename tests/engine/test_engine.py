"""Fast shared-prefix tracing == plain generate(output_scores=True) on the real model."""

import numpy as np
import pytest

from multilabel_llm.data.prompts import AUTO_SLACK, PromptBuilder, resolve_prompt
from multilabel_llm.engine.hf.tracer import TraceEngine, reference_trace
from multilabel_llm.engine.label_tokens import detect_label_tokens
from multilabel_llm.engine.tracing import RawTrace, StopRule, common_prefix_len, finalize
from tests.builders import TOY_PROMPT_CFG, toy_dataset
from tests.builders import bundled_model as bundled
from tests.builders import tiny_model as tiny


def _setup(model, tok, n=4, label_format="json"):
    ds = toy_dataset()
    spec = resolve_prompt({**TOY_PROMPT_CFG, "label_format": label_format}, ds.name)
    pb = PromptBuilder.from_dataset(spec, ds)
    texts = ds.split("dev")["text"].tolist()[:n]
    prompts = [tok(pb.prompt(t)).input_ids for t in texts]
    pre = tok(pb.prefix()).input_ids
    prefix = pre[: common_prefix_len(pre, prompts)]
    lt = detect_label_tokens(tok, ds.labels, spec.label_format)
    rule = StopRule(tok, spec.label_format, spec.stop)
    return ds, spec, prompts, prefix, lt, rule


def test_fast_path_equals_generate_on_bundled_model():
    model, tok = bundled()
    ds, spec, prompts, prefix, lt, rule = _setup(model, tok, n=3)
    assert len(prefix) > 200  # the 10-shot prefix is shared
    engine = TraceEngine(model, tok, lt, rule, spec.max_new_tokens, batch_size=3)
    engine.set_prefix(prefix)
    fast = engine.run(prompts)
    for prompt, got in zip(prompts, fast, strict=True):
        ref, scores = reference_trace(model, tok, prompt, lt, rule, spec.max_new_tokens)
        assert tok.decode(got.gen_ids) == tok.decode(ref.gen_ids)
        assert got.gen_ids == ref.gen_ids
        assert got.form_logits.shape == ref.form_logits.shape
        np.testing.assert_allclose(got.form_logits, ref.form_logits, atol=1e-3, rtol=0)
        np.testing.assert_allclose(scores, ref.form_logits, atol=1e-6)  # greedy: no processors
        # and the per-label (max over forms) logits agree too
        np.testing.assert_allclose(
            lt.reduce(got.form_logits), lt.reduce(ref.form_logits), atol=1e-3
        )
    trace = finalize("q0", fast[0], tok, lt, ds.labels, spec.label_format, rule)
    assert trace.text_out.startswith('\n{"label": [')
    assert trace.pred_labels is not None and trace.label_steps
    probs = np.asarray(trace.step_probs)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_prefix_cut_respects_tokenisation_seam():
    # prefix "ab" tokenised alone may end with a token the full prompt merges differently.
    assert common_prefix_len([1, 2, 3], [[1, 2, 3, 4], [1, 2, 9, 5]]) == 2
    assert common_prefix_len([1, 2], [[1, 2]]) == 1  # always >= 1 suffix token


def test_tiny_model_batched_equals_generate_with_hidden_states():
    model, tok = tiny()
    ds, spec, prompts, prefix, lt, rule = _setup(model, tok, n=5)
    engine = TraceEngine(model, tok, lt, rule, 6, batch_size=2, hidden_states=True)
    engine.set_prefix(prefix)
    fast = engine.run(prompts)
    for prompt, got in zip(prompts, fast, strict=True):
        ref, _ = reference_trace(model, tok, prompt, lt, rule, 6)
        assert got.gen_ids == ref.gen_ids
        np.testing.assert_allclose(got.form_logits, ref.form_logits, atol=1e-4)
        assert got.hidden.shape == (len(got.gen_ids), model.config.hidden_size)


def _raw(tok, text, n_forms):
    ids = tok(text, add_special_tokens=False).input_ids
    return RawTrace(ids, np.zeros((len(ids), n_forms), dtype=np.float32))


def test_finalize_label_steps_and_probs():
    _, tok = bundled()
    lt = detect_label_tokens(tok, ["joy", "fear"], "json")
    rule = StopRule(tok, "json", ["Input:"])
    raw = _raw(tok, '\n{"label": ["fear", "joy"]}', len(lt.forms))
    fear = [j for j, f in enumerate(lt.forms) if f["label"] == "fear"]
    raw.form_logits[:, fear[0]] = 2.0
    tr = finalize("x", raw, tok, lt, ["joy", "fear"], "json", rule)
    assert tr.pred_labels == ["fear", "joy"]
    steps = {s.label: s.step for s in tr.label_steps}
    assert tok.decode([raw.gen_ids[steps["fear"]]]).startswith("f")
    assert tok.decode([raw.gen_ids[steps["joy"]]]).strip().startswith("joy")
    # logits [joy, fear, none] = [0, 2, 0] -> softmax by hand
    e = np.exp([0.0, 2.0, 0.0])
    np.testing.assert_allclose(tr.step_probs[0], e / e.sum(), atol=1e-6)
    assert tr.extra["gen_ids"] == raw.gen_ids


@pytest.mark.parametrize("text", ['\n{"label": ["fe', "\nI feel joy and fear here"])
def test_unparseable_output_is_recorded_not_raised(text):
    _, tok = bundled()
    lt = detect_label_tokens(tok, ["joy", "fear"], "json")
    rule = StopRule(tok, "json", ["Input:"])
    tr = finalize("x", _raw(tok, text, len(lt.forms)), tok, lt, ["joy", "fear"], "json", rule)
    assert tr.pred_labels is None and not tr.parse_ok
    assert tr.extra["unparseable"] is True
    if "joy and fear" in text:
        assert tr.extra["fallback_labels"] == ["joy", "fear"]


def test_stop_rule():
    _, tok = bundled()
    js = StopRule(tok, "json", ["Input:"])
    assert js.text_done('\n{"label": ["joy"]}') and not js.text_done('\n{"label": ["joy"')
    assert js.text_done("blah Input:")
    cm = StopRule(tok, "comma", [])
    assert not cm.text_done("\n") and not cm.text_done(" care, loy")
    assert cm.text_done(" care, loyalty\n")
    assert js.truncate('{"label": []}\nInput: x') == '{"label": []}\n'


def test_cut_output_is_read_leniently_and_flagged():
    _, tok = bundled()
    labels = ["joy", "sadness", "fear"]
    lt = detect_label_tokens(tok, labels, "json")
    rule = StopRule(tok, "json", ["Input:"])
    raw = _raw(tok, '\n{"label": ["sadness", "joy', len(lt.forms))
    raw.extra["hit_max_new_tokens"] = True
    tr = finalize("x", raw, tok, lt, labels, "json", rule)
    assert tr.pred_labels == ["sadness", "joy"] and tr.parse_ok
    assert tr.extra["truncated"] is True and tr.extra["hit_max_new_tokens"] is True
    assert [s.label for s in tr.label_steps] == ["sadness", "joy"]
    # SmolLM2 starts sadness with the fragment "s" (no lead) and joy with "joy"
    assert tr.extra["step_forms"] == [
        {"token": "s", "lead": "", "form": True},
        {"token": "joy", "lead": "", "form": True},
    ]


def test_engine_marks_rows_that_hit_the_budget():
    model, tok = tiny()
    ds, spec, prompts, prefix, lt, rule = _setup(model, tok, n=2)
    engine = TraceEngine(model, tok, lt, rule, 3, batch_size=2)
    engine.set_prefix(prefix)
    for raw in engine.run(prompts):  # a random model never closes the list
        assert len(raw.gen_ids) == 3 and raw.extra == {"hit_max_new_tokens": True}


def test_plan_run_resolves_auto_budget_from_the_tokenizer():
    from multilabel_llm.engine.run import plan_run

    _, tok = bundled()
    ds = toy_dataset()
    ids = ds.split("dev")["id"].tolist()[:2]
    plan = plan_run(ds, ids, tok, {**TOY_PROMPT_CFG, "max_new_tokens": "auto"}, "train")
    spec = plan.builder.spec
    # SmolLM2: "\n", '{"', "label", '":', ' ["', 7 labels (joy 1, optim|ism 2, ad|m|iration 3,
    # sur|prise 2, f|ear 2, s|ad|ness 3, anger 1) with '",', ' "' between them, '"]', "}"
    assert plan.builder.answer_tokens(tok) == 33
    assert spec.max_new_tokens == 33 + AUTO_SLACK
    fixed = plan_run(ds, ids, tok, {**TOY_PROMPT_CFG, "max_new_tokens": 18}, "train")
    assert fixed.builder.spec.max_new_tokens == 18
    assert fixed.fingerprint != plan.fingerprint  # the budget decides the traces' content
