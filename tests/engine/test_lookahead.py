"""label_scoring: lookahead scores each label by its best first-character path (engine/tracing.py).

Checked against a brute-force computation with plain full-sequence forward passes: for every
generated step, log P(form) directly and log P(opener) + log P(form | opener) for each opener.
"""

from functools import lru_cache

import numpy as np
import pytest
import torch

from multilabel_llm.data.prompts import PromptBuilder, resolve_prompt
from multilabel_llm.engine.hf.tracer import TraceEngine
from multilabel_llm.engine.label_tokens import LabelTokens, detect_label_tokens
from multilabel_llm.engine.tracing import StopRule, common_prefix_len, finalize
from tests.builders import TOY_PROMPT_CFG, tiny_random_llama, toy_dataset
from tests.builders import tiny_model as tiny
from tests.engine.test_label_tokens import real_tokenizer


@lru_cache(maxsize=2)
def peaky_model(key: str):
    """A tiny random Llama with sharp next-token distributions (lm_head scaled) that favours
    the openers (+15 on their logits), so the opener path often beats the direct one;
    ``key``: "bundled" or a stand-in tokenizer key."""
    if key == "bundled":
        model, tok = tiny_random_llama(tiny()[1], seed=1, hidden=32)
    else:
        model, tok = tiny_random_llama(real_tokenizer(key), seed=1, hidden=32)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    lt = detect_label_tokens(tok, toy_dataset().labels, "json")
    bias = torch.zeros(len(tok))
    bias[lt.opener_ids] = 15.0
    model.lm_head.register_forward_hook(lambda _mod, _inp, out: out + bias)
    return model, tok


def _setup(model, tok, n=3):
    ds = toy_dataset()
    spec = resolve_prompt({**TOY_PROMPT_CFG, "n_shots": 2}, ds.name)
    pb = PromptBuilder.from_dataset(spec, ds)
    texts = ds.split("dev")["text"].tolist()[:n]
    prompts = [tok(pb.prompt(t)).input_ids for t in texts]
    pre = tok(pb.prefix()).input_ids
    prefix = pre[: common_prefix_len(pre, prompts)]
    lt = detect_label_tokens(tok, ds.labels, "json")
    return ds, prompts, prefix, lt, StopRule(tok, "json", ["Input:"])


@torch.inference_mode()
def logp(model, seq: list[int]) -> np.ndarray:
    out = model(input_ids=torch.as_tensor([seq]), logits_to_keep=1)
    return torch.log_softmax(out.logits[0, -1].double(), -1).numpy()


def direct_logp(model, ids, lt) -> np.ndarray:
    return logp(model, ids)[lt.form_ids]


def brute_force(model, ids: list[int], lt: LabelTokens) -> np.ndarray:
    """Per-form best path log-probability after ``ids``, from full forward passes."""
    here = logp(model, ids)
    best = here[lt.form_ids].copy()
    for opener in lt.opener_ids:
        then = logp(model, [*ids, opener])[lt.form_ids]
        path = here[opener] + then
        best = np.where(lt.leadless, np.maximum(best, path), best)
    return best


@pytest.mark.parametrize("key", ["bundled", "llama3"])
def test_lookahead_equals_brute_force(key):
    model, tok = peaky_model(key)
    ds, prompts, prefix, lt, rule = _setup(model, tok, n=2)
    assert lt.opener_ids  # " " (both) and '"' (Llama 3's merged '"f', '"s')
    if key == "llama3":
        assert '"' in [o["text"] for o in lt.openers]
    steps = 3
    look = TraceEngine(model, tok, lt, rule, steps, batch_size=2, label_scoring="lookahead")
    look.set_prefix(prefix)
    raws = look.run(prompts)
    plain = TraceEngine(model, tok, lt, rule, steps, batch_size=2)
    plain.set_prefix(prefix)
    base = plain.run(prompts)
    won = 0
    for prompt, raw, ref in zip(prompts, raws, base, strict=True):
        assert raw.gen_ids == ref.gen_ids  # scoring never changes what is generated
        assert len(raw.gen_ids) == steps and raw.extra == {"hit_max_new_tokens": True}
        for t in range(steps):
            seq = prompt + raw.gen_ids[:t]
            np.testing.assert_allclose(raw.form_logits[t], brute_force(model, seq, lt), atol=2e-3)
            # count forms whose opener path beat the direct token (the test must exercise it)
            won += int((raw.form_logits[t] > direct_logp(model, seq, lt) + 1e-3).sum())
    assert won > 0
    assert look.logit_kind == "logprob" and plain.logit_kind == "logit"


def test_lookahead_without_openers_equals_first_token():
    # no openers: every label's path is its first token, and the label-renormalised
    # probabilities are exactly today's (log-softmax shifts all forms of a row equally)
    model, tok = peaky_model("bundled")
    ds, prompts, prefix, lt, rule = _setup(model, tok, n=2)
    bare = LabelTokens(lt.labels, lt.forms, lt.shared, openers=[])
    traces = []
    for scoring in ("first_token", "lookahead"):
        engine = TraceEngine(model, tok, bare, rule, 3, batch_size=2, label_scoring=scoring)
        engine.set_prefix(prefix)
        raw = engine.run(prompts)[0]
        traces.append(finalize("q", raw, tok, bare, ds.labels, "json", rule))
    np.testing.assert_allclose(traces[0].step_probs, traces[1].step_probs, atol=1e-5)


def test_unknown_scoring_is_refused():
    model, tok = tiny()
    lt = detect_label_tokens(tok, ["joy"], "json")
    with pytest.raises(ValueError, match="label_scoring 'beam'"):
        TraceEngine(model, tok, lt, StopRule(tok, "json"), 3, label_scoring="beam")
