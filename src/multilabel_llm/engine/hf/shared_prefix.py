"""Shared-prefix (cascade) attention: every row of a batch attends to one copy of the prefix.

A batch over a shared few-shot prefix used to hold the prefix's keys and values once per row,
so each decoding step read (and each batch first copied) rows x prefix KV per layer: 22 % of a
16-row CPU decoding step, and on a GPU rows x prefix x layers of memory (64 rows of a
1,000-token prefix on Llama-3-70B: 21 GB in bf16). Here the cache holds only each row's own
tokens; :func:`cascade_attention` computes the attention over the prefix (one matrix product
for all rows' queries against the single copy) and over the row's own tokens separately and
merges the two softmaxes by their log-sum-exp. Same numbers as one softmax over both, up to
float rounding (``tests/engine/test_shared_prefix.py``).

It plugs into transformers' attention interface under :data:`NAME`; a model takes part only
inside :func:`shared_prefix_attention` and only in forwards given ``shared_prefix=``, and a
forward whose layers did not all come through here raises (:meth:`SharedPrefix.check`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

NAME = "multilabel_llm_shared_prefix"
# query rows x prefix columns scored at once (float32): bounds the transient per layer
_SCORE_ELEMENTS = 1 << 25


class SharedPrefix:
    """The prefix's per-layer keys/values, each (1, kv heads, prefix length, head dim)."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]]):
        if not layers:
            raise ValueError("SharedPrefix needs the prefix's key/value layers")
        self.layers = layers
        self.length = int(layers[0][0].shape[-2])
        self.calls = 0  # attention calls since the last check()
        self._widened: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def layer(self, idx: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``idx``'s prefix keys/values as (kv heads, length, head dim) in ``dtype``
        (a half-precision prefix is widened once, not at every step)."""
        k, v = self.layers[idx]
        if k.dtype == dtype:
            return k[0], v[0]
        if idx not in self._widened:
            self._widened[idx] = (k[0].to(dtype), v[0].to(dtype))
        return self._widened[idx]

    def check(self, model_name: str) -> None:
        """Raise unless every attention layer of the last forward attended to the prefix."""
        calls, self.calls = self.calls, 0
        if calls != len(self.layers):
            raise RuntimeError(
                f"{model_name}: {calls} of {len(self.layers)} attention layers went through the "
                "shared-prefix attention; this model cannot use the shared-prefix path"
            )


def supports_shared_prefix(model) -> bool:
    """Whether ``model``'s attention goes through transformers' attention interface with
    full (not sliding-window or soft-capped) attention in every layer."""
    config = getattr(model, "config", None)
    can_set = getattr(model, "_can_set_attn_implementation", None)
    if config is None or can_set is None or not can_set():
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        if set(layer_types) - {"full_attention"}:
            return False
    elif getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False  # e.g. Mistral: a window in every layer
    return not any(
        getattr(config, key, None) for key in ("attn_logit_softcapping", "attention_chunk_size")
    )


@contextmanager
def shared_prefix_attention(model):
    """Route ``model``'s attention through :func:`cascade_attention` for the block."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, cascade_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # 2D masks become 4D as for sdpa
    before = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _masked_scores(scores, attention_mask, q_len: int, kv_len: int):
    """Apply the suffix mask (bool or additive, (batch, 1, q, >= kv)) to (batch, kv heads,
    groups, q, kv) scores; no mask means causal, aligned to the last query."""
    if attention_mask is None:
        if q_len == 1:
            return scores
        q_at = torch.arange(q_len, device=scores.device)[:, None] + (kv_len - q_len)
        allowed = torch.arange(kv_len, device=scores.device)[None, :] <= q_at
        return scores.masked_fill(~allowed, float("-inf"))
    mask = attention_mask[:, :, :, :kv_len].unsqueeze(2)  # broadcast over the head groups
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores + mask.to(scores.dtype)


def cascade_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    shared_prefix: SharedPrefix | None = None,
    **kwargs,
):
    """Attention over ``shared_prefix`` (all rows) then ``key``/``value`` (each row's own
    tokens, masked by ``attention_mask``); the transformers attention-function signature,
    returning (batch, q, heads, head dim). Without ``shared_prefix`` it is plain sdpa."""
    if shared_prefix is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    for unsupported in ("sliding_window", "softcap", "s_aux"):
        if kwargs.get(unsupported) is not None:
            raise NotImplementedError(f"shared-prefix attention does not support {unsupported}")
    shared_prefix.calls += 1
    batch, heads, q_len, dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    # scores and sums in float32 (or wider): bf16 scores would round logits by ~1e-2
    acc = torch.promote_types(query.dtype, torch.float32)
    # head h reads kv head h // groups: a kv head's queries are one block of rows
    q = query.reshape(batch, kv_heads, groups * q_len, dim).to(acc)

    # the prefix: every row's queries against its one copy, in blocks of bounded size
    rows = q.transpose(0, 1).reshape(kv_heads, batch * groups * q_len, dim)
    pk, pv = shared_prefix.layer(module.layer_idx, acc)
    step = max(1, _SCORE_ELEMENTS // max(1, kv_heads * shared_prefix.length))
    out_p, max_p, sum_p = [], [], []
    for lo in range(0, rows.shape[1], step):
        scores = torch.matmul(rows[:, lo : lo + step], pk.transpose(-1, -2)) * scale
        top = scores.amax(-1, keepdim=True)
        weights = torch.exp(scores - top)
        max_p.append(top)
        sum_p.append(weights.sum(-1, keepdim=True))
        out_p.append(torch.matmul(weights, pv))

    def per_row(parts):  # (kv heads, batch x groups x q, .) -> (batch, kv heads, groups x q, .)
        joined = torch.cat(parts, dim=1)
        return joined.reshape(kv_heads, batch, groups * q_len, -1).transpose(0, 1)

    out_p, max_p, sum_p = per_row(out_p), per_row(max_p), per_row(sum_p)

    # the row's own tokens, masked; a fully masked row (padding) contributes nothing
    scores = torch.matmul(q, key.to(acc).transpose(-1, -2)) * scale
    scores = scores.reshape(batch, kv_heads, groups, q_len, kv_len)
    scores = _masked_scores(scores, attention_mask, q_len, kv_len)
    scores = scores.reshape(batch, kv_heads, groups * q_len, kv_len)
    top = torch.maximum(max_p, scores.amax(-1, keepdim=True))
    weights = torch.exp(scores - top)
    rescale = torch.exp(max_p - top)
    out = out_p * rescale + torch.matmul(weights, value.to(acc))
    out = out / (sum_p * rescale + weights.sum(-1, keepdim=True))
    out = out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous()
    return out.to(query.dtype), None
