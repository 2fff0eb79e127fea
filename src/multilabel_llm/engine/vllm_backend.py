"""Optional vLLM backend: greedy decoding returning only the label-form log-probs per step.

vLLM's ``SamplingParams(logprob_token_ids=[...])`` returns exactly those ids' log-probs at
every step (``logprobs_mode`` "raw_logprobs": before any processor). Log-probs differ from
logits by a per-step constant, so the renormalised label probabilities are identical; the
trace meta records ``logit_kind: logprob``. Prefix caching is vLLM's own (on by default).
Untested in this repository's CI (vLLM is not installed there); import is lazy.
"""

from __future__ import annotations

import numpy as np

from .tracing import RawTrace, StopRule


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


class VLLMTraceBackend:
    def __init__(
        self,
        model_path: str,
        label_tokens,
        stop_rule: StopRule,
        max_new_tokens: int,
        dtype: str = "auto",
        **llm_kwargs,
    ):
        from vllm import LLM

        self.llm = LLM(model=model_path, dtype=dtype, enable_prefix_caching=True, **llm_kwargs)
        self.label_tokens, self.stop_rule = label_tokens, stop_rule
        self.max_new_tokens = int(max_new_tokens)
        self.prefix = None
        self.form_ids = [int(t) for t in dict.fromkeys(label_tokens.form_ids)]
        if len(self.form_ids) > 128:
            raise ValueError(
                f"vLLM returns at most 128 logprob_token_ids, got {len(self.form_ids)}"
            )

    def set_prefix(self, prefix_ids) -> None:
        """vLLM caches shared prefixes itself (automatic prefix caching)."""
        self.prefix = prefix_ids

    def run(self, prompts: list[list[int]], progress=None) -> list[RawTrace]:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(
            temperature=0.0,
            max_tokens=self.max_new_tokens,
            logprob_token_ids=self.form_ids,
            stop=self.stop_rule.stop or None,
        )
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params)
        col = {tid: k for k, tid in enumerate(self.form_ids)}
        form_cols = [col[t] for t in self.label_tokens.form_ids]
        raws = []
        for out in outs:
            comp = out.outputs[0]
            gen = list(comp.token_ids)
            steps = np.full((len(gen), len(self.form_ids)), -np.inf, dtype=np.float32)
            for s, step_lp in enumerate(comp.logprobs or []):
                for tid, lp in step_lp.items():
                    if tid in col:
                        steps[s, col[tid]] = lp.logprob
            # Cut at the end of the label list exactly as the HF paths stop.
            end = next(
                (k + 1 for k in range(len(gen)) if self.stop_rule.done(gen[: k + 1])), len(gen)
            )
            raws.append(
                RawTrace(gen[:end], steps[:end][:, form_cols], extra={"logit_kind": "logprob"})
            )
            if progress is not None:
                progress.update(1)
        return raws
