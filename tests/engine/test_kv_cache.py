"""The in-place KV cache (engine/hf/kv_cache.py) == transformers' DynamicCache, step by step."""

import numpy as np
import pytest
import torch
from transformers.cache_utils import DynamicLayer

from multilabel_llm.data.prompts import PromptBuilder, resolve_prompt
from multilabel_llm.engine.hf import tracer
from multilabel_llm.engine.hf.kv_cache import ReservedLayer, length_groups, reserved_cache
from multilabel_llm.engine.hf.tracer import TraceEngine
from multilabel_llm.engine.label_tokens import detect_label_tokens
from multilabel_llm.engine.tracing import StopRule, common_prefix_len
from tests.builders import TOY_PROMPT_CFG, toy_dataset
from tests.builders import bundled_model as bundled


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


def test_length_groups_minimise_padding_plus_forward_overhead():
    lengths = [3, 3, 4, 10, 11, 30]
    assert length_groups(lengths, overhead=1000) == [[0, 1, 2, 3, 4, 5]]
    assert length_groups(lengths, overhead=0) == [[0, 1], [2], [3], [4], [5]]
    groups = length_groups(lengths, overhead=8)
    assert [r for g in groups for r in g] == list(range(6))
    padded = sum(len(g) * lengths[g[-1]] + 8 for g in groups)
    assert padded <= len(lengths) * 30 + 8  # never worse than one padded forward
    with pytest.raises(ValueError, match="sorted"):
        length_groups([5, 3], overhead=0)


@pytest.mark.parametrize(
    ("label_scoring", "hidden", "overhead"),
    [("first_token", True, 0), ("lookahead", False, 0), ("first_token", False, 10_000)],
)
def test_trace_engine_grouped_prefill_equals_one_padded_forward(
    monkeypatch, label_scoring, hidden, overhead
):
    """Rows of different suffix lengths prefilled in groups (overhead 0: as many groups as
    lengths) or in one (huge overhead) into the reserved cache, rows finishing at different
    steps (row dropping), lookahead probes (crop) and a budget cut: the tokens, logits and
    hidden states of one padded forward over a concatenating cache."""
    model, tok = bundled()
    ds = toy_dataset()
    spec = resolve_prompt(TOY_PROMPT_CFG, ds.name)
    pb = PromptBuilder.from_dataset(spec, ds)
    texts = ds.split("dev")["text"].tolist()[:3] + ["a much longer query " * 6]
    prompts = [tok(pb.prompt(t)).input_ids for t in texts]
    pre = tok(pb.prefix()).input_ids
    prefix = pre[: common_prefix_len(pre, prompts)]
    assert len({len(p) for p in prompts}) > 1
    lt = detect_label_tokens(tok, ds.labels, spec.label_format)
    rule = StopRule(tok, spec.label_format, spec.stop)

    def run():
        engine = TraceEngine(
            model, tok, lt, rule, 12, 4, hidden_states=hidden, label_scoring=label_scoring
        )
        engine.group_overhead = overhead
        engine.set_prefix(prefix)
        return engine.run(prompts)

    fast = run()
    monkeypatch.setattr(
        tracer.PrefixCache,
        "forward_suffix_groups",
        lambda self, s, pad, hidden, room, overhead: self.forward_suffixes(s, pad, hidden=hidden),
    )
    plain = run()
    for a, b in zip(fast, plain, strict=True):
        assert a.gen_ids == b.gen_ids
        np.testing.assert_allclose(a.form_logits, b.form_logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(a.gen_logprobs, b.gen_logprobs, atol=1e-4, rtol=0)
        if hidden:
            np.testing.assert_allclose(a.hidden, b.hidden, atol=1e-4, rtol=0)
