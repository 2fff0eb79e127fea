"""Token-level marginalisation: P(label appears anywhere in the generated list).

The method family of *Token Level Marginalization for Multi-Label LLM Classifiers* (2025,
"marginal probability at any position"): instead of reading label probabilities at one
generation step, sum the probability of every generation path whose parsed label list
contains the label. The space of paths is exponential, so the search is bounded:

* **Heaviest branch first**: the frontier node with the largest path probability is popped
  next. ``strategy="rollout"`` (default) then follows the most likely token until the path
  ends, queueing every sibling on the way, so each pop completes one path (a DFS over top-p
  tokens, as in the paper's "any position" strategy, ordered by mass). ``"best_first"``
  expands only the popped node (uniform-cost search: complete paths come out in decreasing
  probability, but a flat distribution spends the budget on short prefixes).
* **Top-p pruning** per step: only the smallest set of next tokens holding ``top_p`` of the
  mass (at most ``top_k`` tokens) is expanded; the rest is *unexplored mass*.
* **Budgets**: stop after ``max_paths`` complete paths or ``max_expansions`` forward passes;
  a path ends at EOS, at the end of the label list (``is_complete``) or after
  ``max_new_tokens``; paths lighter than ``min_path_mass`` are not expanded.

Mass bookkeeping: ``explored + unexplored = 1`` (up to float error), where ``explored`` is
the mass of complete paths and ``unexplored`` everything pruned or left on the frontier.
For each label, ``lower`` (mass of explored paths listing it) and ``lower + unexplored``
bound the exact marginal; ``normalized = lower / explored`` is the estimate the method row
uses (unexplored paths assumed to list labels as often as explored ones).

Cost: one forward pass per expansion (``<= 1 + max_expansions``). Each pass feeds only the
tokens of the popped path that are not in the KV cache: the prompt's KV is computed once and
the cache is cropped back to the longest common prefix of the previous and the next path, so
a child expanded right after its parent costs a single token.

The search is one generator (:func:`search_steps`) that yields the path it needs next; the
model side (a cache per search, batched forwards) is
:mod:`multilabel_llm.engine.hf.marginalization`, the authors' estimators
:mod:`multilabel_llm.engine.hf.authors_search`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Generator, Sequence

import numpy as np

from multilabel_llm.engine.hf.authors_search import authors_dfs_steps, authors_walk_steps
from multilabel_llm.engine.hf.search_settings import (
    CompletePath,
    MarginalResult,
    SearchSettings,
    nucleus,
)


def search_steps(
    decode: Callable[[list[int]], str],
    eos_ids: set[int],
    parse_fn: Callable[[str], list[str] | None],
    labels: Sequence[str],
    settings: SearchSettings | None = None,
    is_complete: Callable[[str], bool] | None = None,
    finalize_text: Callable[[str], str] | None = None,
) -> Generator[list[int], np.ndarray, MarginalResult]:
    """The search as a generator: it yields each generated suffix whose next-token
    log-probabilities it needs, is sent them back, and returns the :class:`MarginalResult`.

    One search, two drivers: :func:`search_paths` answers each request with one forward
    (the reference), :func:`batched_marginals` answers the requests of many examples in one
    batched forward. Both therefore explore the same paths in the same order.
    """
    settings = settings or SearchSettings()
    if settings.definition == "authors":
        if settings.estimator == "any_place":
            return (yield from authors_dfs_steps(decode, eos_ids, labels, settings))
        return (yield from authors_walk_steps(decode, eos_ids, labels, settings))
    start = time.time()
    labels = list(labels)
    index = {lab: k for k, lab in enumerate(labels)}
    lower = np.zeros(len(labels))
    counter = itertools.count()  # tie-breaker: equal masses pop in insertion order
    frontier: list[tuple[float, int, list[int], float]] = [(-0.0, next(counter), [], 1.0)]
    paths: list[CompletePath] = []
    unexplored = 0.0
    unparsed = 0.0
    expansions = 0

    def complete(tokens: list[int], mass: float) -> None:
        nonlocal unparsed
        text = decode(tokens)
        if finalize_text is not None:
            text = finalize_text(text)
        parsed = parse_fn(text)
        paths.append(CompletePath(tokens, text, mass, parsed))
        if parsed is None:
            unparsed += mass
            return
        for lab in set(parsed):
            if lab in index:
                lower[index[lab]] += mass

    budget = settings.expansion_budget

    def expand(tokens: list[int], mass: float, logprobs: np.ndarray, greedy: bool = False):
        """Complete or prune the nucleus children of one forward pass; return the open ones
        (best first) and whether the most likely child ended the path. On the ``greedy``
        path the most likely child is never cut by ``min_path_mass``."""
        nonlocal unexplored, expansions
        logprobs = np.asarray(logprobs, dtype=np.float64)
        expansions += 1
        ids, probs = nucleus(logprobs, settings.top_p, settings.top_k)
        unexplored += mass * max(0.0, 1.0 - float(probs.sum()))
        open_children = []
        best_done = False
        for rank, (tok, p) in enumerate(zip(ids.tolist(), probs.tolist(), strict=True)):
            child_mass = mass * p
            child = [*tokens, int(tok)]
            if tok in eos_ids:
                complete(tokens, child_mass)
                best_done |= rank == 0
            elif len(child) >= settings.max_new_tokens or (
                is_complete is not None and is_complete(decode(child))
            ):
                complete(child, child_mass)
                best_done |= rank == 0
            elif child_mass < settings.min_path_mass and not (greedy and rank == 0):
                unexplored += child_mass
                best_done |= rank == 0
            else:
                open_children.append((child, child_mass))
        return open_children, best_done

    def push(child, child_mass):
        heapq.heappush(frontier, (-math.log(child_mass), next(counter), child, child_mass))

    # keep_greedy: the root's pop follows the greedy path to its end whatever the strategy,
    # the expansion budget or min_path_mass say (the cuts apply to its siblings), so a row
    # never loses what greedy decoding names
    greedy = settings.greedy_kept
    while frontier and len(paths) < settings.max_paths and (greedy or expansions < budget):
        _, _, tokens, mass = heapq.heappop(frontier)
        children, best_done = expand(tokens, mass, (yield tokens), greedy)
        # rollout: follow the most likely child to the end of the list, queueing its siblings,
        # so every pop completes a path (a DFS over top-p tokens, heaviest branch first)
        while (settings.strategy == "rollout" or greedy) and children and not best_done:
            (child, child_mass), siblings = children[0], children[1:]
            for sib, sib_mass in siblings:
                push(sib, sib_mass)
            if expansions >= budget and not greedy:
                children = [(child, child_mass)]
                break
            children, best_done = expand(child, child_mass, (yield child), greedy)
        greedy = False
        for child, child_mass in children:
            push(child, child_mass)
    unexplored += sum(node[3] for node in frontier)
    explored = float(sum(p.mass for p in paths))
    return MarginalResult(
        labels=labels,
        lower=lower,
        explored_mass=explored,
        unexplored_mass=float(unexplored),
        unparsed_mass=float(unparsed),
        n_expansions=expansions,
        paths=paths,
        seconds=time.time() - start,
    )


def search_paths(
    step_logprobs: Callable[[list[int]], np.ndarray],
    decode: Callable[[list[int]], str],
    eos_ids: set[int],
    parse_fn: Callable[[str], list[str] | None],
    labels: Sequence[str],
    settings: SearchSettings | None = None,
    is_complete: Callable[[str], bool] | None = None,
    finalize_text: Callable[[str], str] | None = None,
) -> MarginalResult:
    """Bounded best-first enumeration of generation paths (see the module docstring).

    ``step_logprobs(suffix)`` gives next-token log-probabilities after the prompt followed
    by ``suffix``; ``decode`` turns generated ids into text (special tokens dropped);
    ``finalize_text`` (e.g. cut at a stop string) runs before ``parse_fn``.
    """
    search = search_steps(decode, eos_ids, parse_fn, labels, settings, is_complete, finalize_text)
    try:
        request = next(search)
        while True:
            request = search.send(step_logprobs(request))
    except StopIteration as stop:
        return stop.value
