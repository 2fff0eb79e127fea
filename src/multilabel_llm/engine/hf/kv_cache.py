"""A KV cache that grows in place: decoding writes each new token into reserved room.

transformers' ``DynamicLayer`` concatenates at every step, so each decoded token copies the
whole cache of every layer (for a 400-token few-shot prefix over a batch, several times the
bytes the attention itself reads). ``ReservedLayer`` keeps a buffer with room for the tokens
still to come and writes into it; ``keys``/``values`` are views of the filled part, so the
model sees exactly the tensors a ``DynamicCache`` would hold (the fast path's equality test:
``tests/engine/test_kv_cache.py``).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose buffers hold ``room`` more tokens before they must grow."""

    def __init__(self, room: int):
        super().__init__()
        self.room = int(room)
        self.filled = 0

    def _reserve(self, like: torch.Tensor, length: int) -> torch.Tensor:
        batch, heads, _, dim = like.shape
        return like.new_empty((batch, heads, length, dim))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self._keys = self._reserve(key_states, key_states.shape[-2] + self.room)
            self._values = self._reserve(value_states, value_states.shape[-2] + self.room)
        new = key_states.shape[-2]
        end = self.filled + new
        if end > self._keys.shape[-2]:  # out of room: grow once by the reserve again
            grown_k = self._reserve(self._keys, end + self.room)
            grown_v = self._reserve(self._values, end + self.room)
            grown_k[:, :, : self.filled] = self._keys[:, :, : self.filled]
            grown_v[:, :, : self.filled] = self._values[:, :, : self.filled]
            self._keys, self._values = grown_k, grown_v
        self._keys[:, :, self.filled : end] = key_states
        self._values[:, :, self.filled : end] = value_states
        self.filled = end
        self.keys = self._keys[:, :, :end]
        self.values = self._values[:, :, :end]
        return self.keys, self.values

    def hold(self, keys: torch.Tensor, values: torch.Tensor, filled: int) -> None:
        """Take ready buffers (the first ``filled`` positions hold the cache; the rest is room)."""
        self.lazy_initialization(keys, values)
        self._keys, self._values, self.filled = keys, values, int(filled)
        self.keys = self._keys[:, :, : self.filled]
        self.values = self._values[:, :, : self.filled]

    def get_seq_length(self) -> int:
        return self.filled if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative count of tokens to remove")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self.filled = max(self.filled + tokens_to_remove, 0)
        self.keys = self._keys[:, :, : self.filled]
        self.values = self._values[:, :, : self.filled]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if not self.is_initialized:
            return
        # keep the reserve: the surviving rows go on decoding
        self._keys = self._keys[indices.to(self._keys.device)]
        self._values = self._values[indices.to(self._values.device)]
        self.keys = self._keys[:, :, : self.filled]
        self.values = self._values[:, :, : self.filled]

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("ReservedLayer does not repeat rows")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)


def length_groups(lengths: list[int], overhead: int) -> list[list[int]]:
    """Split rows sorted by length into contiguous groups, one forward each, minimising the
    tokens run (each group padded to its longest row) plus ``overhead`` tokens per forward."""
    n = len(lengths)
    if any(a > b for a, b in zip(lengths, lengths[1:], strict=False)):
        raise ValueError("length_groups expects rows sorted by length")
    best, cut = [0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end):
            cost = best[start] + (end - start) * lengths[end - 1] + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], n
    while end > 0:
        groups.append(list(range(cut[end], end)))
        end = cut[end]
    return groups[::-1]


def reserved_cache(config, room: int) -> DynamicCache:
    """A ``DynamicCache`` for ``config``'s model whose layers reserve ``room`` tokens.

    The caller fills it (e.g. a shared prefix expanded over the batch) and decodes; each
    layer copies its contents once, into a buffer sized for what will follow.
    """
    cache = DynamicCache(config=config)
    # sliding-window (and other special) layers keep their own update rule
    cache.layers = [
        ReservedLayer(room) if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache
