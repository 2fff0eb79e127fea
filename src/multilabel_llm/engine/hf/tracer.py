"""Greedy generation with per-step label traces on Hugging Face: the fast shared-prefix
path and the reference.

Fast path (``TraceEngine``): every query of a run shares the few-shot prefix, so its KV cache
is computed once; query suffixes are batched over it (left-padded *between* prefix and
suffix, positions from the mask), then decoded greedily in batches. Per step only the
label-form logits and the argmax leave the device. Finished rows are dropped from the batch.

Reference path (``reference_trace``): plain ``model.generate(output_scores=True,
output_logits=True)`` per prompt with the same stopping rule; the equality test and the
benchmark compare the two.

``label_scoring="lookahead"`` scores each label form by its full first-character path: the
form's own log-probability, or for a form that starts right at the label (``"joy"``), the
best of that and ``log P(opener) + log P(form | opener)`` over the openers (the bare '"' or
" " that merged forms like '"s' carry). Each opener costs one extra 1-token forward of the
batch per step, appended to the KV cache and cropped off again. ``form_logits`` then hold
log-probabilities (``logit_kind`` "logprob"); see docs/label_tokens.md.

What decoding leaves (:class:`~multilabel_llm.engine.tracing.RawTrace`) is parsed into traces by
engine/tracing.py, the same for every backend.
"""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import torch
from transformers import DynamicCache, GenerationConfig, StoppingCriteriaList
from transformers.cache_utils import DynamicLayer

from multilabel_llm.data.prompts import LABEL_SCORINGS
from multilabel_llm.engine.hf.kv_cache import length_groups, reserved_cache
from multilabel_llm.engine.hf.shared_prefix import (
    SharedPrefix,
    shared_prefix_attention,
    supports_shared_prefix,
)
from multilabel_llm.engine.label_tokens import LabelTokens
from multilabel_llm.engine.loading import input_device
from multilabel_llm.engine.tracing import RawTrace, StopRule


class _StopCriterion:
    """``StopRule`` as a transformers StoppingCriteria (batch size 1)."""

    def __init__(self, rule: StopRule, prompt_len: int):
        self.rule, self.prompt_len = rule, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        done = [self.rule.done(row[self.prompt_len :].tolist()) for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _to_device_ids(ids, device):
    return torch.as_tensor(ids, dtype=torch.long, device=device)


class PrefixCache:
    """The shared prefix's KV cache, expanded per batch, and batched suffix forwards."""

    def __init__(self, model, prefix_ids: list[int]):
        self.model = model
        self.device = input_device(model)
        self.prefix_len = len(prefix_ids)
        self._cache_cls = DynamicCache
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        if prefix_ids:
            with torch.inference_mode():
                # only the KV is wanted: one logits row, not prefix x vocabulary
                out = model(
                    input_ids=_to_device_ids([prefix_ids], self.device),
                    use_cache=True,
                    logits_to_keep=1,
                )
            cache = out.past_key_values
            self.layers = [(layer.keys, layer.values) for layer in cache.layers]
        # grouped prefill and the shared prefix need plain layers (not sliding-window ones)
        self.plain_layers = all(
            type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers
        )
        # the batch attends to this one copy of the prefix (engine/hf/shared_prefix.py) where the
        # model's attention allows it; else each row's cache starts with a copy of it
        self.shared = None
        if self.layers and self.plain_layers and supports_shared_prefix(model):
            self.shared = SharedPrefix(self.layers)
        self.rows_hold_prefix = self.shared is None  # what the last batch's cache holds

    def attention(self):
        """The context the batch's forwards run in (shared-prefix attention, if used)."""
        return shared_prefix_attention(self.model) if self.shared else nullcontext()

    def forward(self, **kwargs):
        """One forward of the batch over the prefix (inside :meth:`attention`)."""
        if self.rows_hold_prefix:
            return self.model(**kwargs)
        out = self.model(**kwargs, shared_prefix=self.shared)
        self.shared.check(type(self.model).__name__)
        return out

    def expanded(self, batch: int, room: int = 0):
        """The prefix over ``batch`` rows; ``room`` > 0 reserves space for that many more
        tokens per row (decoding then writes in place instead of copying the cache per step)."""
        if room > 0:
            cache = reserved_cache(self.model.config, room)
        else:
            cache = self._cache_cls(config=self.model.config)
        for i, (k, v) in enumerate(self.layers):
            cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
        return cache

    def forward_suffixes(
        self, suffixes: list[list[int]], pad_id: int, hidden: bool = False, room: int = 0
    ):
        """Run ``suffixes`` (left-padded) over the prefix; return (out, cache, mask, positions).

        ``room``: tokens the caller will still decode per row (reserved in the cache)."""
        batch, width = len(suffixes), max(len(s) for s in suffixes)
        ids = torch.full((batch, width), pad_id, dtype=torch.long)
        mask = torch.zeros((batch, self.prefix_len + width), dtype=torch.long)
        mask[:, : self.prefix_len] = 1
        for r, s in enumerate(suffixes):
            ids[r, width - len(s) :] = torch.as_tensor(s)
            mask[r, self.prefix_len + width - len(s) :] = 1
        sub = mask[:, self.prefix_len :]
        positions = self.prefix_len + (sub.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = (t.to(self.device) for t in (ids, mask, positions))
        cache = self.expanded(batch, room + width if room else 0)
        self.rows_hold_prefix = True
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=hidden,
        )
        return out, out.past_key_values, mask, positions[:, -1:]

    @torch.inference_mode()
    def forward_suffix_groups(
        self, suffixes: list[list[int]], pad_id: int, hidden: bool, room: int, overhead: int
    ):
        """``forward_suffixes`` with ``room`` reserved for decoding, for rows sorted by length,
        run in groups of similar length (``kv_cache.length_groups``) so a short row is not
        padded to the longest of the batch.

        Every group writes into one cache laid out for the whole batch: the prefix, then each
        row's suffix right-aligned at the batch's width; the gap before a short group's
        suffixes holds zeros that the attention mask hides (position ids skip it). Same
        results per row as one padded forward (``tests/engine/test_kv_cache.py``).
        """

        if not self.layers or not self.plain_layers:
            return self.forward_suffixes(suffixes, pad_id, hidden=hidden, room=room)
        batch, width, pre = len(suffixes), max(len(s) for s in suffixes), self.prefix_len
        self.rows_hold_prefix = self.shared is None
        held = pre if self.rows_hold_prefix else 0  # prefix columns each row's cache holds
        total = held + width
        buffers = []
        for k, v in self.layers:
            pair = []
            for src in (k, v):
                buf = src.new_empty((batch, src.shape[1], total + room, src.shape[-1]))
                if held:
                    buf[:, :, :held] = src
                buf[:, :, held:total].zero_()
                pair.append(buf)
            buffers.append(pair)
        ids = torch.full((batch, width), pad_id, dtype=torch.long)
        mask = torch.zeros((batch, total), dtype=torch.long)
        mask[:, :held] = 1
        for r, s in enumerate(suffixes):
            ids[r, width - len(s) :] = torch.as_tensor(s)
            mask[r, total - len(s) :] = 1
        positions = pre + (mask[:, held:].cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = (t.to(self.device) for t in (ids, mask, positions))
        logits, states = [], []
        for rows in length_groups([len(s) for s in suffixes], overhead):
            lo, hi = rows[0], rows[-1] + 1
            own = len(suffixes[rows[-1]])  # the group's longest row
            view = reserved_cache(self.model.config, 0)
            for layer, (kb, vb) in zip(view.layers, buffers, strict=True):
                layer.hold(kb[lo:hi], vb[lo:hi], total - own)  # writes land in the buffers
            out = self.forward(
                input_ids=ids[lo:hi, width - own :],
                attention_mask=mask[lo:hi],
                position_ids=positions[lo:hi, width - own :],
                past_key_values=view,
                use_cache=True,
                logits_to_keep=1,
                output_hidden_states=hidden,
            )
            logits.append(out.logits[:, -1:, :])
            states.append(out.hidden_states[-1][:, -1:, :] if hidden else None)
        cache = reserved_cache(self.model.config, room)
        for layer, (kb, vb) in zip(cache.layers, buffers, strict=True):
            layer.hold(kb, vb, total)
        out = SimpleNamespace(
            logits=torch.cat(logits), hidden_states=(torch.cat(states),) if hidden else None
        )
        return out, cache, mask, positions[:, -1:]


def prefill_group_overhead(device: torch.device) -> int:
    """Tokens a separate prefill forward is worth (``kv_cache.length_groups``): on CPU one
    forward's fixed cost is about 20 padded tokens' work; a GPU runs padding almost free but
    pays per launch."""
    return 24 if device.type == "cpu" else 512


class TraceEngine:
    """Batched greedy decoding over a shared prefix, keeping only label-form logits."""

    def __init__(
        self,
        model,
        tokenizer,
        label_tokens: LabelTokens,
        stop_rule: StopRule,
        max_new_tokens: int = 18,
        batch_size: int = 16,
        hidden_states: bool = False,
        label_scoring: str = "first_token",
    ):
        if label_scoring not in LABEL_SCORINGS:
            raise ValueError(f"label_scoring {label_scoring!r} not in {LABEL_SCORINGS}")
        self.model, self.tokenizer = model, tokenizer
        self.label_tokens = label_tokens
        self.stop_rule = stop_rule
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.hidden_states = hidden_states
        self.label_scoring = label_scoring
        self.logit_kind = "logprob" if label_scoring == "lookahead" else "logit"
        self.device = input_device(model)
        self.group_overhead = prefill_group_overhead(self.device)
        self.form_ids = _to_device_ids(label_tokens.form_ids, self.device)
        self.opener_ids = list(label_tokens.opener_ids)
        self.leadless = torch.as_tensor(label_tokens.leadless, device=self.device)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self.prefix: PrefixCache | None = None
        self.prefix_ids: list[int] = []

    def set_prefix(self, prefix_ids: list[int]) -> None:
        if self.prefix is None or prefix_ids != self.prefix_ids:
            self.prefix_ids = list(prefix_ids)
            self.prefix = PrefixCache(self.model, self.prefix_ids)

    def run(self, prompts: list[list[int]], progress=None) -> list[RawTrace]:
        """Trace every prompt (full token ids, each starting with ``self.prefix_ids``)."""
        if self.prefix is None:
            raise ValueError("call set_prefix(prefix_ids) before run()")
        n_pre = len(self.prefix_ids)
        for i, ids in enumerate(prompts):
            if list(ids[:n_pre]) != self.prefix_ids or len(ids) <= n_pre:
                raise ValueError(f"prompt {i} does not extend the shared prefix")
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[RawTrace | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, raw in zip(
                chunk, self._decode([prompts[i][n_pre:] for i in chunk]), strict=True
            ):
                results[i] = raw
            if progress is not None:
                progress.update(len(chunk))
        return results

    def _decode(self, suffixes: list[list[int]]) -> list[RawTrace]:
        with torch.inference_mode(), self.prefix.attention():
            return self._decode_batch(suffixes)

    def _decode_batch(self, suffixes: list[list[int]]) -> list[RawTrace]:
        batch = len(suffixes)
        # room for every decoding step, plus the lookahead's one-token probe
        out, cache, mask, pos = self.prefix.forward_suffix_groups(
            suffixes,
            self.pad_id,
            hidden=self.hidden_states,
            room=self.max_new_tokens + 1,
            overhead=self.group_overhead,
        )
        gen = [[] for _ in range(batch)]
        gen_lp = [[] for _ in range(batch)]
        forms = [[] for _ in range(batch)]
        hid = [[] for _ in range(batch)]
        alive = list(range(batch))  # original row of each current batch row
        cut: set[int] = set()
        for _step in range(self.max_new_tokens):
            logits = out.logits[:, -1, :].float()
            if self.label_scoring == "lookahead":
                form = self._lookahead(logits, cache, mask, pos).cpu().numpy()
            else:
                form = logits.index_select(-1, self.form_ids).cpu().numpy()
            nxt = logits.argmax(-1)
            nxt_list = nxt.tolist()
            # the generated token's full-vocabulary log-probability: one value per row
            lp_list = torch.log_softmax(logits, -1).gather(-1, nxt[:, None])[:, 0].tolist()
            last_h = (
                out.hidden_states[-1][:, -1, :].float().cpu().numpy()
                if self.hidden_states
                else None
            )
            keep = []
            for r, row in enumerate(alive):
                gen[row].append(nxt_list[r])
                gen_lp[row].append(lp_list[r])
                forms[row].append(form[r])
                if last_h is not None:
                    hid[row].append(last_h[r])
                if not self.stop_rule.done(gen[row]):
                    keep.append(r)
            if not keep:
                break
            if _step == self.max_new_tokens - 1:
                cut = {alive[r] for r in keep}  # still going when the budget ran out
                break
            if len(keep) < len(alive):
                index = torch.as_tensor(keep, device=self.device)
                # CPU indices: a model placed over several GPUs keeps each layer's cache on
                # its own device, and a CUDA index only indexes tensors on its own GPU
                cache.batch_select_indices(index.cpu())
                nxt, mask, pos = nxt[index], mask[index], pos[index]
                alive = [alive[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=-1)
            pos = pos + 1
            out = self.prefix.forward(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
                output_hidden_states=self.hidden_states,
            )
        return [
            RawTrace(
                gen[r],
                np.stack(forms[r]).astype(np.float32),
                np.stack(hid[r]).astype(np.float32) if self.hidden_states else None,
                {"hit_max_new_tokens": True} if r in cut else {},
                np.asarray(gen_lp[r], dtype=np.float64),
            )
            for r in range(batch)
        ]

    def _lookahead(self, logits, cache, mask, pos) -> torch.Tensor:
        """(batch, n_forms) log-probabilities of each form's best first-character path.

        ``cache``/``mask``/``pos`` describe the sequence the current ``logits`` came from; each
        opener is appended for one forward and cropped off, leaving the cache as it was.
        """
        # logits live where the model's last layer is (not the first parameter's device
        # when a model is spread over several GPUs): keep the path arithmetic there
        form_ids, leadless = self.form_ids.to(logits.device), self.leadless.to(logits.device)
        logp = torch.log_softmax(logits, dim=-1)
        best = logp.index_select(-1, form_ids)
        if not self.opener_ids:
            return best
        mask1 = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        for opener in self.opener_ids:
            ids = torch.full((logits.shape[0], 1), opener, dtype=torch.long, device=self.device)
            nxt = self.prefix.forward(
                input_ids=ids,
                attention_mask=mask1,
                position_ids=pos + 1,
                past_key_values=cache,
                use_cache=True,
            )
            cache.crop(-1)  # negative: drop the opener again (old and new transformers alike)
            then = torch.log_softmax(nxt.logits[:, -1, :].float(), dim=-1)
            path = logp[:, opener : opener + 1] + then.to(logp.device).index_select(-1, form_ids)
            # only a form that starts at the label can follow an opener ('"' + '"s' is no path)
            best = torch.where(leadless, torch.maximum(best, path), best)
        return best


@torch.inference_mode()
def reference_trace(
    model,
    tokenizer,
    prompt_ids: list[int],
    label_tokens: LabelTokens,
    stop_rule: StopRule,
    max_new_tokens: int = 18,
) -> tuple[RawTrace, np.ndarray]:
    """Plain ``generate(output_scores=True)``; returns the raw trace and the processed scores'
    label-form columns (equal to the raw logits under greedy decoding without processors)."""
    device = input_device(model)
    ids = _to_device_ids([prompt_ids], device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        generation_config=config,
        stopping_criteria=StoppingCriteriaList([_StopCriterion(stop_rule, len(prompt_ids))]),
        output_scores=True,
        output_logits=True,
        return_dict_in_generate=True,
    )
    gen = out.sequences[0, len(prompt_ids) :].tolist()
    form_ids = _to_device_ids(label_tokens.form_ids, device)
    full = torch.stack([s[0].float() for s in out.logits])
    logits = full.index_select(-1, form_ids)
    scores = torch.stack([s[0].float() for s in out.scores]).index_select(-1, form_ids)
    gen_lp = torch.log_softmax(full, -1).gather(
        -1, torch.as_tensor(gen, device=full.device)[:, None]
    )
    raw = RawTrace(gen, logits.cpu().numpy(), gen_logprobs=gen_lp[:, 0].double().cpu().numpy())
    return raw, scores.cpu().numpy()
