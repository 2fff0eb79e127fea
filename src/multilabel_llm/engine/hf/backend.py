"""The Hugging Face engine behind the backend interface (engine/backend.py).

A thin holder of a loaded transformers model: traces come from :class:`~.tracer.TraceEngine`
(shared-prefix KV cache, grouped prefill, shared-prefix attention), next-token scores from
the same grouped prefill over the prefix; the jobs only Hugging Face runs (attention
weights, the token-level marginalisation search) are methods here too, so the drivers reach
them through the backend. Drivers given a bare transformers model wrap it in this class
(engine/backend.py: ``as_backend``), so code and tests that pass a model keep working.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from multilabel_llm.engine.backend import DECLARED
from multilabel_llm.engine.hf.attention import label_step_attention
from multilabel_llm.engine.hf.marginalization import batched_marginals
from multilabel_llm.engine.hf.search_settings import SearchSettings
from multilabel_llm.engine.hf.tracer import PrefixCache, TraceEngine, prefill_group_overhead
from multilabel_llm.engine.identity import weight_probe
from multilabel_llm.engine.loading import load_model


class HFBackend:
    name = "hf"
    capabilities = DECLARED["hf"]

    def __init__(self, model, tokenizer, spec=None):
        self.model, self.tokenizer, self.spec = model, tokenizer, spec

    @classmethod
    def load(cls, model_cfg: dict, spec, adapter: str | None = None) -> HFBackend:
        model, tokenizer = load_model(model_cfg, adapter=adapter, spec=spec)
        return cls(model, tokenizer, spec)

    def tracer(
        self,
        label_tokens,
        stop_rule,
        max_new_tokens: int,
        batch_size: int,
        *,
        hidden_states: bool = False,
        label_scoring: str = "first_token",
    ):
        return TraceEngine(
            self.model,
            self.tokenizer,
            label_tokens,
            stop_rule,
            max_new_tokens,
            batch_size,
            hidden_states=hidden_states,
            label_scoring=label_scoring,
        )

    @torch.inference_mode()
    def next_token_scores(
        self,
        prefix_ids: list[int],
        prompts: list[list[int]],
        token_ids: list[int],
        *,
        batch_size: int = 32,
        desc: str = "",
    ) -> np.ndarray:
        """(n_prompts, n_ids) next-token logits; every prompt starts with ``prefix_ids``."""
        cut = len(prefix_ids)
        cache = PrefixCache(self.model, list(prefix_ids))
        ids = torch.as_tensor(token_ids, device=cache.device)
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        out = np.zeros((len(prompts), len(token_ids)), dtype=np.float32)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        bar = tqdm(total=len(prompts), unit="prompt", desc=desc, mininterval=1)
        overhead = prefill_group_overhead(cache.device)
        with cache.attention():  # every row attends to the one prefix copy, where it can
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]  # sorted by length: grouped prefill
                res, *_ = cache.forward_suffix_groups(
                    [prompts[i][cut:] for i in chunk],
                    int(pad),
                    hidden=False,
                    room=0,
                    overhead=overhead,
                )
                out[chunk] = res.logits[:, -1, :].float().index_select(-1, ids).cpu().numpy()
                bar.update(len(chunk))
        bar.close()
        return out

    def marginals(
        self,
        prompts: list[list[int]],
        labels: list[str],
        parse,
        settings: dict,
        *,
        is_complete,
        finalize_text,
        batch_size: int,
    ) -> list:
        """The token-level search of every prompt (``settings``: the method's search params),
        advanced together one batched forward per round (engine/hf/marginalization.py)."""
        return batched_marginals(
            self.model,
            self.tokenizer,
            prompts,
            labels,
            parse,
            SearchSettings.from_params(settings),
            is_complete=is_complete,
            finalize_text=finalize_text,
            batch_size=batch_size,
        )

    def label_step_attention(self, prompts: dict[str, list[int]], traces):
        """Table 6's attention masses of the traced label steps (engine/hf/attention.py)."""
        return label_step_attention(self.model, self.tokenizer, prompts, traces)

    def shard_components(self) -> dict:
        # the loaded model itself: another seed, merged adapter or dtype changes these
        return {
            "weights": weight_probe(self.model),
            "dtype": str(getattr(self.model, "dtype", None)),
        }

    def context_length(self) -> int | None:
        return model_context(self.model)

    def close(self) -> None:
        pass


def model_context(model) -> int | None:
    """The context length a loaded model was trained for (None when it does not say)."""
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None
