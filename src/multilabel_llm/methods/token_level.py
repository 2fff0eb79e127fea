"""Estimators 1 and 2 of Praharaj & Kasundra 2025, read off the greedy output's traces.

*Token-Level Marginalization for Multi-Label LLM Classifiers* (arXiv 2511.22312):
``token_probability`` is the full-vocabulary probability of the greedy token that completes a
label, ``marginal_fixed_place`` the running product of those probabilities in output order
(docs/metrics.md). Estimator 3 needs the model: kind ``marginalization``
(:mod:`multilabel_llm.engine.hf.marginalization`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from multilabel_llm.core.distributions import distribution_frame, normalise_rows
from multilabel_llm.core.traces import Trace, TraceMeta
from multilabel_llm.methods.estimators import counted_label_steps, traces_by_id
from multilabel_llm.methods.registry import kinds_computed_by, param_default

# the kinds whose registry entry names estimate_token_level
TOKEN_LEVEL_KINDS = kinds_computed_by("multilabel_llm.methods.token_level:estimate_token_level")


def completing_token_probs(meta: TraceMeta, trace: Trace, source: str) -> list[tuple[str, float]]:
    """``(label, p)`` per counted label, in output order: ``p`` is the full-vocabulary
    probability of the generated token that completes the label (its last character).

    Needs the trace fields ``extra.gen_probs`` and ``extra.label_ends`` that the engine
    records since the token-level estimators exist; older traces raise a ValueError."""
    gen_probs = trace.extra.get("gen_probs")
    ends = trace.extra.get("label_ends")
    if gen_probs is None or ends is None:
        raise ValueError(
            f"{source}: trace {trace.id!r} has no extra.gen_probs / extra.label_ends (written "
            f"by an older engine); the token_probability and marginal_fixed_place methods "
            f"need them: delete the trace file (and its shards/) and rerun extract_traces"
        )
    end_of = {(e["start"], e["label"]): int(e["end"]) for e in ends}
    out = []
    for step in counted_label_steps(meta, trace):
        end = end_of.get((step.step, step.label))
        if end is None or not 0 <= end < len(gen_probs):
            raise ValueError(
                f"{source}: trace {trace.id!r}: label {step.label!r} at step {step.step} has "
                f"no completing step within the {len(gen_probs)} generated steps"
            )
        out.append((step.label, float(gen_probs[end])))
    return out


def token_level(
    meta: TraceMeta,
    traces: Sequence[Trace],
    ids: Sequence[str],
    labels: Sequence[str],
    multilabel: bool,
    kind: str = "token_probability",
    epsilon: float = 0.0,
    source: str = "traces",
) -> pd.DataFrame:
    """Estimators 1 and 2 of *Token-Level Marginalization for Multi-Label LLM Classifiers*
    (Praharaj & Kasundra 2025), read off the greedy output (docs/metrics.md).

    ``token_probability``: a named label's value is :func:`completing_token_probs`' ``p``.
    ``marginal_fixed_place``: the running product of those ``p`` in output order, up to and
    including the label, the probability of the output's label sequence reaching it.
    Labels the output does not name get ``epsilon`` (0 in the paper). Only dataset labels
    enter the product (``none`` names no class). Single-label: rows renormalised to sum 1.
    """
    if kind not in TOKEN_LEVEL_KINDS:
        raise ValueError(f"token-level estimator kind must be one of {TOKEN_LEVEL_KINDS}")
    chosen = traces_by_id(traces, ids, source)
    index = {lab: k for k, lab in enumerate(labels)}
    values = np.full((len(chosen), len(labels)), float(epsilon))
    for row, trace in enumerate(chosen):
        running = 1.0
        for label, p in completing_token_probs(meta, trace, source):
            if label not in index:
                continue
            running *= p
            value = p if kind == "token_probability" else running
            values[row, index[label]] = max(values[row, index[label]], value)
    if not multilabel:
        values = normalise_rows(values)
    return distribution_frame(ids, labels, np.clip(values, 0.0, 1.0))


def estimate_token_level(kind, params, ids, labels, multilabel, inputs, source) -> pd.DataFrame:
    """Kinds ``token_probability`` / ``marginal_fixed_place`` from their config params."""
    if params.get("definition", param_default(kind, "definition")) != "ours":
        raise ValueError(
            f"method kind {kind!r}: params.definition {params['definition']!r}: the traces "
            f"give ours only; the authors' definition needs the model (kind marginalization "
            f"with definition: authors, config/method/{kind}_authors.yaml)"
        )
    floor = float(params.get("epsilon", param_default(kind, "epsilon")))
    return token_level(*inputs["traces"], ids, labels, multilabel, kind, floor, source)
