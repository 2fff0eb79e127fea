"""The in-place KV cache (engine/kv_cache.py) == transformers' DynamicCache, step by step."""

import numpy as np
import pytest
import torch
from transformers.cache_utils import DynamicLayer

from multilabel_llm.engine import tracing
from multilabel_llm.engine.kv_cache import ReservedLayer, reserved_cache
from multilabel_llm.engine.label_tokens import detect_label_tokens
from multilabel_llm.engine.testing import TOY_PROMPT_CFG, toy_dataset
from multilabel_llm.engine.testing import bundled_model as bundled
from multilabel_llm.engine.tracing import StopRule, TraceEngine, common_prefix_len
from multilabel_llm.prompts import PromptBuilder, resolve_prompt


def _kv(batch, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, length, 4, generator=g), torch.randn(
        batch, 2, length, 4, generator=g
    )


def test_layer_matches_dynamic_layer_through_update_crop_select_and_growth():
    plain, reserved = DynamicLayer(), ReservedLayer(room=3)
    steps = [("update", 5), ("update", 1), ("crop", -1), ("update", 1), ("select", [2, 0])]
    steps += [("update", 1)] * 6  # past the reserve: the buffer grows
    for i, (op, arg) in enumerate(steps):
        if op == "update":
            batch = plain.keys.shape[0] if plain.is_initialized else 3
            k, v = _kv(batch, arg, i)
            out_plain, out_res = plain.update(k, v), reserved.update(k, v)
            for a, b in zip(out_plain, out_res, strict=True):
                assert torch.equal(a, b)
        elif op == "crop":
            plain.crop(arg)
            reserved.crop(arg)
        else:
            index = torch.as_tensor(arg)
            plain.batch_select_indices(index)
            reserved.batch_select_indices(index)
        assert reserved.get_seq_length() == plain.get_seq_length()
        assert torch.equal(reserved.keys, plain.keys)
        assert torch.equal(reserved.values, plain.values)
    assert reserved.get_seq_length() == 5 + 1 - 1 + 1 + 6


def test_reserved_cache_keeps_special_layers():
    model, _ = bundled()
    cache = reserved_cache(model.config, room=4)
    assert all(isinstance(layer, ReservedLayer) for layer in cache.layers)
    assert len(cache.layers) == model.config.num_hidden_layers


@pytest.mark.parametrize("label_scoring", ["first_token", "lookahead"])
def test_trace_engine_same_with_and_without_reserved_room(monkeypatch, label_scoring):
    """Rows finishing at different steps (row dropping), lookahead probes (crop) and a
    budget cut: the reserved cache gives the tokens and logits of the concatenating one."""
    model, tok = bundled()
    ds = toy_dataset()
    spec = resolve_prompt(TOY_PROMPT_CFG, ds.name)
    pb = PromptBuilder.from_dataset(spec, ds)
    prompts = [tok(pb.prompt(t)).input_ids for t in ds.split("dev")["text"].tolist()[:4]]
    pre = tok(pb.prefix()).input_ids
    prefix = pre[: common_prefix_len(pre, prompts)]
    lt = detect_label_tokens(tok, ds.labels, spec.label_format)
    rule = StopRule(tok, spec.label_format, spec.stop)

    def run():
        engine = TraceEngine(model, tok, lt, rule, 12, batch_size=4, label_scoring=label_scoring)
        engine.set_prefix(prefix)
        return engine.run(prompts)

    fast = run()
    plain_expanded = tracing.PrefixCache.expanded
    monkeypatch.setattr(
        tracing.PrefixCache, "expanded", lambda self, batch, room=0: plain_expanded(self, batch)
    )
    plain = run()
    assert len({len(r.gen_ids) for r in fast}) >= 1
    for a, b in zip(fast, plain, strict=True):
        assert a.gen_ids == b.gen_ids
        np.testing.assert_allclose(a.form_logits, b.form_logits, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.gen_logprobs, b.gen_logprobs, atol=1e-5, rtol=0)
