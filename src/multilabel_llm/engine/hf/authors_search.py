"""Estimator 3 as the authors of *Token Level Marginalization for Multi-Label LLM Classifiers*
computed it (``definition: authors``): a greedy walk and a depth-first search that credit a
label whenever a decoded path ends with it, without normalisation."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence

import numpy as np

from multilabel_llm.engine.hf.search_settings import (
    CompletePath,
    MarginalResult,
    SearchSettings,
    nucleus,
)


def _label_hits(text: str, labels: Sequence[str], settings: SearchSettings, extended: set[str]):
    """Labels the decoded ``text`` ends with, as the authors credit them: ``(credited now,
    deferred)``. With ``suffix_credit`` off, a label another label continues ("S1" of
    "S10") is deferred until the next token shows whether it ended."""
    hits = [k for k, lab in enumerate(labels) if lab and text.endswith(lab)]
    if settings.credits_suffixes:
        return hits, []
    now = [k for k in hits if labels[k] not in extended]
    return now, [k for k in hits if labels[k] in extended]


def _extended_labels(labels: Sequence[str]) -> set[str]:
    """Labels that another label of the set starts with ("S1" when "S10" is a label)."""
    return {a for a in labels for b in labels if a != b and b.startswith(a)}


def _ends_label(before: str, after: str) -> bool:
    """Whether the text ``after`` (a continuation of ``before``) leaves a label that ends
    ``before`` ended: nothing or a non-alphanumeric character follows."""
    rest = after[len(before) :] if after.startswith(before) else after
    return not rest or not rest[0].isalnum()


def authors_walk_steps(
    decode: Callable[[list[int]], str],
    eos_ids: set[int],
    labels: Sequence[str],
    settings: SearchSettings,
) -> Generator[list[int], np.ndarray, MarginalResult]:
    """Estimators 1 and 2 as the authors computed them (``definition: authors``): greedy
    decoding up to ``max_new_tokens`` (their 50) or EOS, with no stop at the end of the list;
    at every step whose decoded text ends with a label, the label is credited the step's
    full-vocabulary token probability (``token_probability``) or the running product of the
    probabilities of every crediting step so far, this one included (``fixed_place``: the
    completing tokens of ``unsafe`` and of repeats enter the product); a later repeat
    overwrites the value. ``suffix_credit`` off: a label another label continues is credited
    only where the text that follows it does not continue a word."""
    start = time.time()
    labels = list(labels)
    extended = set() if settings.credits_suffixes else _extended_labels(labels)
    tokens: list[int] = []
    step_probs: list[float] = []
    texts: list[str] = []
    mass = 1.0
    expansions = 0
    for _ in range(settings.max_new_tokens):
        logprobs = np.asarray((yield tokens), dtype=np.float64)
        expansions += 1
        probs = np.exp(logprobs - logprobs.max())
        probs = probs / probs.sum()
        tok = int(np.argmax(probs))
        mass *= float(probs[tok])
        if tok in eos_ids:
            break
        tokens = [*tokens, tok]
        step_probs.append(float(probs[tok]))
        texts.append(decode(tokens))
    values = np.zeros(len(labels))
    running = 1.0
    final = texts[-1] if texts else ""
    credited: list[str] = []
    for step, (text, p) in enumerate(zip(texts, step_probs, strict=True)):
        now, deferred = _label_hits(text, labels, settings, extended)
        following = texts[step + 1] if step + 1 < len(texts) else final
        now += [k for k in deferred if _ends_label(text, following)]
        if not now:
            continue
        running *= p  # once per crediting step
        for k in now:
            values[k] = p if settings.estimator == "token_probability" else running
            credited.append(labels[k])
    return MarginalResult(
        labels=labels,
        lower=values,
        explored_mass=mass,
        unexplored_mass=1.0 - mass,
        unparsed_mass=0.0,
        n_expansions=expansions,
        paths=[CompletePath(tokens, final, mass, list(dict.fromkeys(credited)))],
        seconds=time.time() - start,
        definition="authors",
    )


def authors_dfs_steps(
    decode: Callable[[list[int]], str],
    eos_ids: set[int],
    labels: Sequence[str],
    settings: SearchSettings,
) -> Generator[list[int], np.ndarray, MarginalResult]:
    """Estimator 3 as the authors computed it (``definition: authors``): a depth-first search
    over the top-p children (most likely first, ``top_k`` null in their setting). A node whose
    path probability is below ``min_path_mass`` (their eps 0.01) is pruned before it is
    expanded; a path also ends at EOS or ``max_new_tokens``. Every checked child whose decoded
    text ends with a label credits that label its path probability times its token
    probability, summed over the tree (no normalisation; clipped to 1 when read). EOS rules:
    once an EOS child with p >= ``eos_stop_p`` (0.7) is met, its later siblings are not looked
    at; when EOS is in the nucleus only the top ``eos_check`` (3) children are checked and the
    top ``eos_expand`` (2) expanded. An EOS child credits nothing. ``suffix_credit`` off: a
    label another label continues is credited, at the node that wrote it, the share of that
    node's nucleus children that end it (EOS or a non-alphanumeric start), or in full where
    the node is not expanded."""
    start = time.time()
    labels = list(labels)
    extended = set() if settings.credits_suffixes else _extended_labels(labels)
    values = np.zeros(len(labels))
    paths: list[CompletePath] = []
    totals = {"explored": 0.0, "unexplored": 0.0, "expansions": 0}

    def visit(tokens: list[int], mass: float, text: str, deferred: list[int]):
        if mass < settings.min_path_mass or len(tokens) >= settings.max_new_tokens:
            for k in deferred:  # not expanded: nothing says the label went on
                values[k] += mass
            if mass < settings.min_path_mass:
                totals["unexplored"] += mass
            else:
                totals["explored"] += mass
                paths.append(CompletePath(tokens, text, mass, None))
            return
        logprobs = np.asarray((yield tokens), dtype=np.float64)
        totals["expansions"] += 1
        ids, probs = nucleus(logprobs, settings.top_p, settings.top_k)
        ids, probs = [int(t) for t in ids], [float(p) for p in probs]
        totals["unexplored"] += mass * max(0.0, 1.0 - sum(probs))
        children = [
            (tok, p, None if tok in eos_ids else decode([*tokens, tok]))
            for tok, p in zip(ids, probs, strict=True)
        ]
        for k in deferred:
            values[k] += sum(
                mass * p for _, p, child in children if child is None or _ends_label(text, child)
            )
        n_check, n_expand = len(children), len(children)
        if any(child is None for *_, child in children):
            n_check, n_expand = min(settings.eos_check, n_check), settings.eos_expand
        for rank, (tok, p, child_text) in enumerate(children):
            child_mass = mass * p
            if rank >= n_check:
                totals["unexplored"] += child_mass
                continue
            if child_text is None:  # EOS: the path ends here
                totals["explored"] += child_mass
                paths.append(CompletePath(tokens, text, child_mass, None))
                if p >= settings.eos_stop_p:
                    totals["unexplored"] += sum(mass * q for _, q, _ in children[rank + 1 :])
                    break
                continue
            now, later = _label_hits(child_text, labels, settings, extended)
            for k in now:
                values[k] += child_mass
            if rank < n_expand:
                yield from visit([*tokens, tok], child_mass, child_text, later)
            else:
                totals["unexplored"] += child_mass
                for k in later:
                    values[k] += child_mass

    yield from visit([], 1.0, "", [])
    return MarginalResult(
        labels=labels,
        lower=values,
        explored_mass=float(totals["explored"]),
        unexplored_mass=float(totals["unexplored"]),
        unparsed_mass=0.0,
        n_expansions=int(totals["expansions"]),
        paths=paths,
        seconds=time.time() - start,
        definition="authors",
    )
