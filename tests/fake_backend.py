"""A backend without a model: deterministic answers and scores, for the drivers' own tests
(handed to the drivers as an instance; it is not in the library's backend registry).

It speaks the backend interface (engine/backend.py) with a real tokenizer but no weights and no
torch: each prompt's answer is a label list picked by a digest of the prompt's tokens, written
in the run's label format and tokenised; every step's label-form scores and the generated
token's log-prob come from a generator seeded by the same digest. So the drivers' sharding,
resuming, merging, parsing and fingerprinting run in milliseconds, and a changed prompt (or
``seed``) changes exactly that prompt's answer. It is never chosen by a model config.
"""

from __future__ import annotations

import hashlib

import numpy as np

from multilabel_llm.data.prompts import format_labels
from multilabel_llm.engine.backend import Capabilities
from multilabel_llm.engine.tracing import RawTrace


def _digest(ids, seed: int) -> int:
    text = f"{seed}:" + ",".join(str(int(i)) for i in ids)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


class FakeBackend:
    name = "fake"
    capabilities = Capabilities()

    def __init__(self, tokenizer, labels: list[str], seed: int = 0):
        self.tokenizer, self.labels, self.seed = tokenizer, list(labels), int(seed)
        self.calls = 0  # prompts answered: resume tests count what was recomputed

    def answer_ids(self, prompt, label_format: str) -> list[int]:
        rng = np.random.default_rng(_digest(prompt, self.seed))
        k = int(rng.integers(0, 3))
        picked = sorted(rng.choice(len(self.labels), size=k, replace=False).tolist())
        text = "\n" + format_labels([self.labels[j] for j in picked], label_format)
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        eos = self.tokenizer.eos_token_id
        return ids + ([eos] if eos is not None else [])

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
        if hidden_states or label_scoring != "first_token":
            raise ValueError("the fake backend has no hidden states and no lookahead")
        return _FakeTracer(self, label_tokens, stop_rule, int(max_new_tokens))

    def next_token_scores(self, prefix_ids, prompts, token_ids, *, batch_size=32, desc=""):
        out = np.zeros((len(prompts), len(token_ids)), dtype=np.float32)
        for i, prompt in enumerate(prompts):
            rng = np.random.default_rng(_digest(prompt, self.seed))
            out[i] = -rng.exponential(2.0, size=len(token_ids))
            self.calls += 1
        return out

    def shard_components(self) -> dict:
        return {"fake": {"seed": self.seed}}

    def context_length(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class _FakeTracer:
    logit_kind = "logprob"

    def __init__(self, backend: FakeBackend, label_tokens, stop_rule, max_new_tokens: int):
        self.backend, self.stop_rule, self.max_new = backend, stop_rule, max_new_tokens
        self.form_ids = list(label_tokens.form_ids)
        self.prefix = None

    def set_prefix(self, prefix_ids) -> None:
        self.prefix = list(prefix_ids)

    def run(self, prompts, progress=None) -> list[RawTrace]:
        out = []
        for prompt in prompts:
            gen = self.backend.answer_ids(prompt, self.stop_rule.label_format)[: self.max_new]
            cut = next((k + 1 for k in range(len(gen)) if self.stop_rule.done(gen[: k + 1])), None)
            extra = {} if cut else {"hit_max_new_tokens": True}
            gen = gen[: cut or len(gen)]
            rng = np.random.default_rng(_digest(prompt, self.backend.seed + 1))
            forms = -rng.exponential(2.0, size=(len(gen), len(self.form_ids))).astype(np.float32)
            gen_lp = -rng.exponential(0.5, size=len(gen))
            out.append(RawTrace(gen, forms, None, extra, gen_lp))
            self.backend.calls += 1
        if progress is not None:
            progress.update(len(prompts))
        return out
