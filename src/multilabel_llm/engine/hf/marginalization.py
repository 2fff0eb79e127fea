"""Token-level marginalisation over a transformers causal LM: the model side of the bounded
path search of :mod:`multilabel_llm.engine.hf.path_search` (its module docstring defines the
search, the masses and the bounds).

Batched (:func:`batched_marginals`, what the ``marginalize`` rule runs): the search is one
generator (``path_search.search_steps``) that yields the path it needs next, so many
examples' searches advance in lockstep and one forward answers all their requests, over the
shared few-shot prefix's KV (computed once) and per-row caches cropped as :class:`HFStepper`
crops its cache. The per-example drive (``path_search.search_paths``,
:func:`marginal_label_probs`) is the reference: same paths in the same order, masses equal up
to float error (tests/engine/test_marginalization_batched.py).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np

from multilabel_llm.engine.hf.path_search import search_paths, search_steps
from multilabel_llm.engine.hf.search_settings import MarginalResult, SearchSettings


class HFStepper:
    """Next-token log-probabilities after ``prompt + suffix`` for a transformers causal LM.

    The prompt's KV cache is computed once; for each query the cache is cropped to the
    longest common prefix with the previous suffix and only the new tokens are fed.
    """

    def __init__(self, model, prompt_ids: Sequence[int]):
        import torch

        if len(prompt_ids) == 0:
            raise ValueError("marginalization: the prompt tokenised to zero tokens")
        self.torch = torch
        self.model = model
        from multilabel_llm.engine.loading import input_device

        self.device = input_device(model)  # the main device also when placed over GPUs
        self.prompt_len = len(prompt_ids)
        with torch.no_grad():
            out = model(
                input_ids=torch.tensor([list(prompt_ids)], device=self.device), use_cache=True
            )
        self.cache = out.past_key_values
        self.root = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu().numpy()
        self.cached: list[int] = []  # suffix tokens currently in the cache after the prompt
        self.forwards = 1

    def _crop_to(self, n_suffix: int) -> None:
        drop = len(self.cached) - n_suffix
        if drop > 0:
            self.cache.crop(-drop)  # transformers 5.x: a negative count removes tokens
            self.cached = self.cached[:n_suffix]

    def __call__(self, suffix: list[int]) -> np.ndarray:
        if not suffix:
            return self.root
        common = 0
        for a, b in zip(self.cached, suffix, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(suffix) - 1)  # feed at least one token to get logits
        self._crop_to(common)
        new = suffix[common:]
        torch = self.torch
        with torch.no_grad():
            out = self.model(
                input_ids=torch.tensor([new], device=self.device),
                past_key_values=self.cache,
                use_cache=True,
            )
        self.cache = out.past_key_values
        self.cached = list(suffix)
        self.forwards += 1
        return torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu().numpy()


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (
        getattr(tokenizer, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ):
        if source is None:
            continue
        ids.update(source if isinstance(source, (list, tuple)) else [source])
    return {int(i) for i in ids}


def marginal_label_probs(
    model,
    tokenizer,
    prompt_text: str,
    labels: Sequence[str],
    parse_fn: Callable[[str], list[str] | None],
    top_p: float = 0.99,
    max_paths: int = 32,
    max_new_tokens: int = 20,
    *,
    max_expansions: int | None = None,
    top_k: int | None = 20,
    min_path_mass: float = 1e-4,
    strategy: str = "rollout",
    is_complete: Callable[[str], bool] | None = None,
    finalize_text: Callable[[str], str] | None = None,
    prompt_ids: Sequence[int] | None = None,
    add_special_tokens: bool = True,
    **more_settings,
) -> MarginalResult:
    """Marginal P(label in generated list) for one prompt (HF transformers model).

    ``parse_fn(text)`` returns the listed labels ([] for none) or None when unparseable.
    ``prompt_ids`` overrides tokenising ``prompt_text`` (to match the trace engine exactly).
    """
    settings = SearchSettings(
        top_p=top_p,
        max_paths=max_paths,
        max_new_tokens=max_new_tokens,
        max_expansions=max_expansions,
        top_k=top_k,
        min_path_mass=min_path_mass,
        strategy=strategy,
        **more_settings,  # keep_greedy, definition, estimator, ... (SearchSettings)
    )
    if prompt_ids is None:
        prompt_ids = tokenizer(prompt_text, add_special_tokens=add_special_tokens)["input_ids"]
    stepper = HFStepper(model, list(prompt_ids))

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    return search_paths(
        stepper,
        decode,
        _eos_ids(model, tokenizer),
        parse_fn,
        labels,
        settings,
        is_complete=is_complete,
        finalize_text=finalize_text,
    )


class SlotCache:
    """A KV cache of ``slots`` rows, each one example's search: that example's query suffix
    and the path currently cached (the tokens after the shared prefix). Passed to
    the model as its cache; the model's 4D mask decides what each query sees, so cropping a
    row back to a common prefix is just lowering its length.

    With ``prefix_layers`` the shared prefix is copied in front of every row (columns
    ``0 .. prefix_len``); without, the rows hold only their own tokens and the prefix is
    attended once for all rows (``engine.shared_prefix``). Storage per layer is preallocated
    (``slots``, kv heads, columns + capacity + 1, head dim); ``update`` scatters the new
    tokens' keys/values to the columns ``cols`` names (padding goes to the last, never
    attended, column) and hands back views up to ``width``, so no step copies the cache (a
    growing ``DynamicCache`` re-concatenates it every forward).
    """

    def __init__(self, prefix_layers, slots: int, capacity: int):
        self.prefix_layers = prefix_layers  # [(k, v)] of shape (1, heads, prefix_len, dim)
        self.slots = slots
        # columns before the rows' own tokens
        self.prefix_len = int(prefix_layers[0][0].shape[-2]) if prefix_layers else 0
        self.total = self.prefix_len + capacity + 1  # + the trash column padding writes to
        self.layers: dict[int, tuple] = {}
        self.cols = None  # (slots, n) columns this forward writes; trash for padding
        self.width = 0  # columns the attention reads this forward

    def _storage(self, layer: int, like):
        import torch

        if layer not in self.layers:
            shape = (self.slots, like.shape[1], self.total, like.shape[3])
            k = torch.zeros(shape, dtype=like.dtype, device=like.device)
            v = torch.zeros_like(k)
            if self.prefix_len:
                pk, pv = self.prefix_layers[layer]
                k[:, :, : self.prefix_len] = pk.to(like.device)
                v[:, :, : self.prefix_len] = pv.to(like.device)
            self.layers[layer] = (k, v)
        return self.layers[layer]

    def keep_rows(self, rows) -> None:
        """Drop every slot but ``rows`` (a finished search's row stops costing compute)."""
        import torch

        index = torch.as_tensor(rows, dtype=torch.long)
        self.layers = {
            i: (k[index.to(k.device)], v[index.to(v.device)]) for i, (k, v) in self.layers.items()
        }
        self.slots = len(rows)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        import torch

        k, v = self._storage(layer_idx, key_states)
        cols = self.cols.to(k.device)
        rows = torch.arange(self.slots, device=k.device)[:, None]
        # advanced indices on dims 0 and 2: the indexed view is (slots, n, heads, dim)
        k[rows, :, cols] = key_states.transpose(1, 2)
        v[rows, :, cols] = value_states.transpose(1, 2)
        return k[:, :, : self.width], v[:, :, : self.width]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width


def batched_marginals(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    labels: Sequence[str],
    parse_fn: Callable[[str], list[str] | None],
    settings: SearchSettings | None = None,
    *,
    is_complete: Callable[[str], bool] | None = None,
    finalize_text: Callable[[str], str] | None = None,
    batch_size: int = 16,
) -> list[MarginalResult]:
    """:func:`marginal_label_probs` for many prompts at once, with the same paths and masses.

    Every example runs the same search (:func:`search_steps`); the searches of up to
    ``batch_size`` examples advance in lockstep and each round answers all their pending
    requests with one batched forward. The prompts' longest common prefix is run once and
    its KV shared by every row; each row's cache holds its own query and current path and is
    cropped back to the common prefix with the next request, so a child expanded right after
    its parent costs one token of that forward (as :class:`HFStepper`). ``seconds`` of each
    result is its batch's wall time divided by the batch's examples.
    """
    import torch

    from multilabel_llm.engine.hf.shared_prefix import (
        SharedPrefix,
        shared_prefix_attention,
        supports_shared_prefix,
    )
    from multilabel_llm.engine.loading import input_device
    from multilabel_llm.engine.tracing import common_prefix_len

    settings = settings or SearchSettings()
    prompts = [list(p) for p in prompts]
    if not prompts:
        return []
    for i, ids in enumerate(prompts):
        if not ids:
            raise ValueError(f"marginalization: prompt {i} tokenised to zero tokens")
    if batch_size < 1:
        raise ValueError(f"marginalization batch_size must be >= 1, got {batch_size}")
    device = input_device(model)
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos or {0}))
    cut = common_prefix_len(prompts[0], prompts)  # leaves every prompt >= 1 own token
    prefix_layers = []
    if cut:
        with torch.inference_mode():
            # only the KV is wanted: one logits row, not prefix x vocabulary
            out = model(
                input_ids=torch.tensor([prompts[0][:cut]], device=device),
                use_cache=True,
                logits_to_keep=1,
            )
        prefix_layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    shared = None  # the prefix attended once for every row, where the model allows it
    if prefix_layers and supports_shared_prefix(model):
        shared = SharedPrefix(prefix_layers)
    results: list[MarginalResult | None] = [None] * len(prompts)
    with shared_prefix_attention(model) if shared else nullcontext():
        for start in range(0, len(prompts), batch_size):
            wave = list(range(start, min(start + batch_size, len(prompts))))
            t0 = time.time()
            searches = {
                r: search_steps(decode, eos, parse_fn, labels, settings, is_complete, finalize_text)
                for r in range(len(wave))
            }
            queries = [prompts[i][cut:] for i in wave]
            wave_cache = SlotCache(
                None if shared else prefix_layers,
                len(wave),
                max(len(q) for q in queries) + settings.max_new_tokens + 1,
            )
            for r, result in _run_wave(
                model, device, queries, cut, wave_cache, shared, pad, searches
            ):
                results[wave[r]] = result
            share = (time.time() - t0) / len(wave)
            for i in wave:
                results[i].seconds = share
    return results


def _run_wave(model, device, queries, cut, cache, shared, pad, searches):
    """Drive the searches (row -> generator) over their ``queries`` (tokens after the shared
    prefix of ``cut`` tokens) to the end; yield (row, result) as each finishes."""
    import torch

    dtype = getattr(model, "dtype", torch.float32)
    dtype = dtype if dtype.is_floating_point else torch.float32
    # transformers >= 5.2x names the argument ``cache`` (``past_key_values`` is deprecated)
    cache_kw = (
        "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    )
    extra = {"shared_prefix": shared} if shared is not None else {}
    before = cache.prefix_len  # cache columns before a row's own tokens
    trash = cache.total - 1
    requests = {r: next(search) for r, search in searches.items()}  # the root comes first
    cached = {r: [] for r in searches}  # tokens after the prefix in each row
    slots = sorted(searches)  # the example of each cache slot
    while slots:
        n = len(slots)
        wants, news, bases = [], [], []
        for r in slots:
            want = queries[r] + requests[r]
            common = 0
            for a, b in zip(cached[r], want, strict=False):
                if a != b:
                    break
                common += 1
            common = min(common, len(want) - 1)  # feed at least one token to get logits
            wants.append(want)
            news.append(want[common:])
            bases.append(common)
        width_in = max(len(x) for x in news)
        ids = torch.full((n, width_in), pad, dtype=torch.long)
        cols = torch.full((n, width_in), trash, dtype=torch.long)
        qcol = torch.zeros((n, width_in), dtype=torch.long)  # padding queries see column 0
        for slot, (new, base) in enumerate(zip(news, bases, strict=True)):
            off = width_in - len(new)  # left padding: every row's last input is real
            ids[slot, off:] = torch.as_tensor(new)
            span = torch.arange(len(new)) + before + base
            cols[slot, off:] = span
            qcol[slot, off:] = span
        cache.cols = cols
        cache.width = max(1, max(before + b + len(x) for b, x in zip(bases, news, strict=True)))
        # a row's cache is contiguous from column 0, so "at or before my own column" is both
        # the causal mask and the crop: columns past a row's length hold a dropped branch
        see = torch.arange(cache.width)[None, None, :] <= qcol[:, :, None]
        mask = torch.zeros(see.shape, dtype=dtype).masked_fill_(~see, torch.finfo(dtype).min)
        with torch.inference_mode():
            out = model(
                input_ids=ids.to(device),
                attention_mask=mask[:, None].to(device),
                position_ids=(qcol + (cut - before)).to(device),
                use_cache=True,
                logits_to_keep=1,
                **{cache_kw: cache},
                **extra,
            )
            logprobs = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu().numpy()
        if shared is not None:
            shared.check(type(model).__name__)
        done = []
        for slot, r in enumerate(slots):
            cached[r] = wants[slot]
            try:
                requests[r] = searches[r].send(logprobs[slot])
            except StopIteration as stop:
                done.append(slot)
                yield r, stop.value
        if done:
            keep = [slot for slot in range(n) if slot not in done]
            cache.keep_rows(keep)
            slots = [slots[slot] for slot in keep]
