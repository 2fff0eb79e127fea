"""Shared-prefix (cascade) attention equals one softmax over prefix + own tokens, and the
engines that use it give what the prefix-per-row path gives."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from multilabel_llm.engine.hf import shared_prefix as sp
from multilabel_llm.engine.hf import tracer
from tests.builders import bundled_model


def plain_attention(query, prefix_k, prefix_v, key, value, allowed):
    """softmax(q k^T / sqrt(d)) v over [prefix | own], ``allowed`` (batch, q, own) masking own."""
    batch, heads, _, dim = query.shape
    groups = heads // key.shape[1]
    k = torch.cat([prefix_k.expand(batch, -1, -1, -1), key], dim=2).repeat_interleave(groups, 1)
    v = torch.cat([prefix_v.expand(batch, -1, -1, -1), value], dim=2).repeat_interleave(groups, 1)
    scores = query @ k.transpose(-1, -2) / dim**0.5
    see = torch.cat([torch.ones(*allowed.shape[:2], prefix_k.shape[2], dtype=bool), allowed], -1)
    scores = scores.masked_fill(~see[:, None], float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
@pytest.mark.parametrize("q_len", [1, 5])
def test_cascade_equals_one_softmax_over_prefix_and_own_tokens(mask_kind, q_len):
    torch.manual_seed(0)
    batch, heads, kv_heads, dim, prefix, own = 3, 6, 2, 8, 11, 7
    query = torch.randn(batch, heads, q_len, dim, dtype=torch.float64)
    key, value = (torch.randn(batch, kv_heads, own, dim, dtype=torch.float64) for _ in "kv")
    prefix_k, prefix_v = (torch.randn(1, kv_heads, prefix, dim, dtype=torch.float64) for _ in "kv")
    # causal over own tokens, row 1 left-padded by two, row 2's first query fully masked
    q_at = torch.arange(q_len)[:, None] + own - q_len
    allowed = (torch.arange(own)[None, :] <= q_at).expand(batch, -1, -1).clone()
    if mask_kind != "none":
        allowed[1, :, :2] = False
        allowed[2, 0, :] = False
    mask = {
        "bool": allowed[:, None],
        "additive": torch.zeros(batch, 1, q_len, own, dtype=torch.float64).masked_fill(
            ~allowed[:, None], torch.finfo(torch.float64).min
        ),
        "none": None,
    }[mask_kind]
    shared = sp.SharedPrefix([(prefix_k, prefix_v)])
    module = SimpleNamespace(layer_idx=0)
    got, _ = sp.cascade_attention(module, query, key, value, mask, shared_prefix=shared)
    want = plain_attention(query, prefix_k, prefix_v, key, value, allowed)
    assert got.shape == (batch, q_len, heads, dim)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    assert shared.calls == 1


def test_prefix_scored_in_blocks_gives_the_same_rows(monkeypatch):
    torch.manual_seed(1)
    query = torch.randn(4, 4, 3, 8)
    key, value = torch.randn(4, 2, 5, 8), torch.randn(4, 2, 5, 8)
    shared = sp.SharedPrefix([(torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8))])
    module = SimpleNamespace(layer_idx=0)
    whole, _ = sp.cascade_attention(module, query, key, value, None, shared_prefix=shared)
    monkeypatch.setattr(sp, "_SCORE_ELEMENTS", 2 * 9 * 5)  # five query rows per block
    blocks, _ = sp.cascade_attention(module, query, key, value, None, shared_prefix=shared)
    torch.testing.assert_close(blocks, whole, atol=1e-6, rtol=0)


def test_a_forward_that_skipped_the_prefix_is_refused():
    shared = sp.SharedPrefix([(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))] * 3)
    shared.calls = 2
    with pytest.raises(RuntimeError, match="2 of 3 attention layers"):
        shared.check("SomeModel")
    shared.calls = 3
    shared.check("SomeModel")
    assert shared.calls == 0
    with pytest.raises(NotImplementedError, match="sliding_window"):
        sp.cascade_attention(
            SimpleNamespace(layer_idx=0),
            torch.zeros(1, 1, 1, 4),
            torch.zeros(1, 1, 1, 4),
            torch.zeros(1, 1, 1, 4),
            None,
            shared_prefix=shared,
            sliding_window=16,
        )


def test_which_models_take_the_shared_prefix():
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, vocab_size=8)
    small["intermediate_size"] = 16
    assert sp.supports_shared_prefix(LlamaForCausalLM(LlamaConfig(**small)))
    windowed = MistralForCausalLM(MistralConfig(**small, sliding_window=4))
    assert not sp.supports_shared_prefix(windowed)
    assert not sp.supports_shared_prefix(torch.nn.Linear(2, 2))


def test_bundled_model_prefill_and_decode_over_one_prefix_copy():
    """Rows of different lengths (left-padded) over one prefix copy, then a decoding step: the
    logits of each row's own full forward; the implementation is restored afterwards."""
    model, tok = bundled_model()
    prefix = tok("A shared few-shot prefix, long enough to matter. " * 4).input_ids
    rows = [tok(f" row {i} says" + " more" * i).input_ids for i in range(4)]
    width = max(map(len, rows))
    ids = torch.zeros((4, width), dtype=torch.long)
    mask = torch.zeros((4, width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    pos = len(prefix) + (mask.cumsum(-1) - 1).clamp(min=0)
    before = model.config._attn_implementation
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prefix]), use_cache=True, logits_to_keep=1)
        shared = sp.SharedPrefix([(la.keys, la.values) for la in out.past_key_values.layers])
        with sp.shared_prefix_attention(model):
            assert model.config._attn_implementation == sp.NAME
            first = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=DynamicCache(config=model.config),
                use_cache=True,
                shared_prefix=shared,
            )
            shared.check("bundled")
            nxt = first.logits[:, -1].argmax(-1)
            second = model(
                input_ids=nxt[:, None],
                attention_mask=torch.cat([mask, torch.ones((4, 1), dtype=torch.long)], -1),
                position_ids=pos[:, -1:] + 1,
                past_key_values=first.past_key_values,
                use_cache=True,
                shared_prefix=shared,
            )
            shared.check("bundled")
        assert model.config._attn_implementation == before
        for r, row in enumerate(rows):
            full = model(input_ids=torch.tensor([prefix + row + [int(nxt[r])]])).logits[0]
            np.testing.assert_allclose(first.logits[r, -1], full[-2], atol=2e-4, rtol=0)
            np.testing.assert_allclose(second.logits[r, -1], full[-1], atol=2e-4, rtol=0)


def test_prefix_cache_copies_the_prefix_for_models_that_cannot_share(monkeypatch):
    model, tok = bundled_model()
    prefix = tok("Some prefix text for the cache. " * 3).input_ids
    assert tracer.PrefixCache(model, prefix).shared is not None
    monkeypatch.setattr(tracer, "supports_shared_prefix", lambda model: False)
    cache = tracer.PrefixCache(model, prefix)
    assert cache.shared is None and cache.rows_hold_prefix


def test_half_precision_scores_are_summed_in_float32():
    """bf16 inputs: scores, softmax and sums in float32, only the output rounded to bf16."""
    torch.manual_seed(2)
    query = (4 * torch.randn(2, 4, 3, 16)).bfloat16()
    key, value = (torch.randn(2, 2, 5, 16).bfloat16() for _ in "kv")
    prefix_k, prefix_v = (torch.randn(1, 2, 40, 16).bfloat16() for _ in "kv")
    shared = sp.SharedPrefix([(prefix_k, prefix_v)])
    got, _ = sp.cascade_attention(
        SimpleNamespace(layer_idx=0), query, key, value, None, shared_prefix=shared
    )
    allowed = (torch.arange(5)[None, :] <= torch.arange(3)[:, None] + 2).expand(2, -1, -1)
    wide = [t.double() for t in (query, prefix_k, prefix_v, key, value)]
    want = plain_attention(*wide, allowed)
    assert got.dtype == torch.bfloat16
    # one bf16 rounding of the output (relative 2^-8), nothing more
    torch.testing.assert_close(got.double(), want, atol=0, rtol=2**-8)
    assert shared.layer(0, torch.float32)[0] is shared.layer(0, torch.float32)[0]  # widened once
