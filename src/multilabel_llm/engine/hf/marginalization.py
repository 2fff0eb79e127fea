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

Batched (:func:`batched_marginals`, what the ``marginalize`` rule runs): the search is one
generator (:func:`search_steps`) that yields the path it needs next, so many examples'
searches advance in lockstep and one forward answers all their requests, over the shared
few-shot prefix's KV (computed once) and per-row caches cropped as above. The per-example
drive (:func:`search_paths`, :func:`marginal_label_probs`) is the reference: same paths in
the same order, masses equal up to float error (tests/engine/test_marginalization_batched.py).
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import math
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

DEFINITIONS = ("ours", "authors")
ESTIMATORS = ("any_place", "token_probability", "fixed_place")


@dataclass(frozen=True)
class SearchSettings:
    top_p: float = 0.99
    max_paths: int = 32
    max_new_tokens: int = 20
    max_expansions: int | None = None  # default: max_paths * max_new_tokens
    top_k: int | None = 20
    min_path_mass: float = 1e-4
    strategy: str = "rollout"  # rollout (pop, then follow the best child to the end) | best_first
    # ours: the greedy path (most likely child from the root on) is completed first and never
    # cut by min_path_mass or the expansion budget, so a row keeps mass on what greedy names
    # (null = on for ours, off for authors)
    keep_greedy: bool | None = None
    # ours | authors (Praharaj & Kasundra's code, reproduced: module docstring, docs/metrics.md)
    definition: str = "ours"
    # authors only: any_place (their DFS, estimator 3) | token_probability | fixed_place (their
    # greedy walk, estimators 1 and 2); ours reads estimators 1 and 2 off the traces instead
    estimator: str = "any_place"
    # authors only: credit a label wherever the decoded text ends with it, so "S1" is credited
    # while "S10" is being written (their defect; null = on for authors). Off: a label that
    # another label continues is credited only once the next token shows it ended
    suffix_credit: bool | None = None
    eos_stop_p: float = 0.7  # authors' DFS: an EOS child this likely ends the sibling loop
    eos_check: int = 3  # authors' DFS: with EOS in the nucleus only this many children are checked
    eos_expand: int = 2  # ... and only this many of them expanded

    def __post_init__(self):
        if self.definition not in DEFINITIONS:
            raise ValueError(
                f"marginalization definition must be one of {DEFINITIONS}, got {self.definition!r}"
            )
        if self.estimator not in ESTIMATORS:
            raise ValueError(
                f"marginalization estimator must be one of {ESTIMATORS}, got {self.estimator!r}"
            )
        if self.definition == "ours" and self.estimator != "any_place":
            raise ValueError(
                f"marginalization estimator {self.estimator!r} needs definition: authors (ours "
                f"reads estimators 1 and 2 off the traces: method kinds token_probability and "
                f"marginal_fixed_place)"
            )
        if self.definition == "ours" and self.suffix_credit:
            raise ValueError(
                "marginalization suffix_credit: true needs definition: authors (ours parses "
                "complete paths, so no label is credited inside another)"
            )
        if self.definition == "authors" and self.keep_greedy:
            raise ValueError(
                "marginalization keep_greedy: true is ours; definition: authors prunes as the "
                "authors did (set keep_greedy: false or definition: ours)"
            )
        if not 0.0 < self.eos_stop_p <= 1.0 or self.eos_check < 1 or self.eos_expand < 0:
            raise ValueError(
                f"marginalization needs eos_stop_p in (0, 1], eos_check >= 1, eos_expand >= 0, "
                f"got {self.eos_stop_p}, {self.eos_check}, {self.eos_expand}"
            )
        if self.strategy not in ("rollout", "best_first"):
            raise ValueError(
                f"marginalization strategy must be rollout|best_first, got {self.strategy!r}"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"marginalization top_p must lie in (0, 1], got {self.top_p}")
        if self.max_paths < 1 or self.max_new_tokens < 1:
            raise ValueError(
                f"marginalization needs max_paths >= 1 and max_new_tokens >= 1, got {self}"
            )
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"marginalization top_k must be >= 1 or null, got {self.top_k}")
        if self.max_expansions is not None and self.max_expansions < 1:
            raise ValueError(
                f"marginalization max_expansions must be >= 1, got {self.max_expansions}"
            )

    @classmethod
    def from_params(cls, params: dict, where: str = "token_marginalization params"):
        """Settings from a method's params (``estimate`` and ``shard_size`` already taken
        out); an unknown key is named with the allowed ones."""
        unknown = sorted(set(params) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {unknown}; allowed: "
                f"{sorted(cls.__dataclass_fields__)} plus estimate, shard_size"
            )
        return cls(**params)

    @property
    def greedy_kept(self) -> bool:
        """Whether the greedy path is completed whatever the cuts (ours; null = ours)."""
        if self.keep_greedy is None:
            return self.definition == "ours"
        return bool(self.keep_greedy)

    @property
    def credits_suffixes(self) -> bool:
        """Whether a label is credited wherever the text ends with it (the authors' defect)."""
        if self.suffix_credit is None:
            return self.definition == "authors"
        return bool(self.suffix_credit)

    @property
    def expansion_budget(self) -> int:
        if self.max_expansions is not None:
            return int(self.max_expansions)
        return self.max_paths * self.max_new_tokens


@dataclass
class CompletePath:
    tokens: list[int]
    text: str
    mass: float
    labels: list[str] | None  # None: unparseable


@dataclass
class MarginalResult:
    labels: list[str]
    lower: np.ndarray  # per label: mass of explored complete paths listing it
    explored_mass: float
    unexplored_mass: float
    unparsed_mass: float
    n_expansions: int
    paths: list[CompletePath] = field(default_factory=list)
    seconds: float = 0.0
    definition: str = "ours"  # authors: ``lower`` holds the authors' values (no normalisation)

    @property
    def n_paths(self) -> int:
        return len(self.paths)

    @property
    def upper(self) -> np.ndarray:
        return np.minimum(self.lower + self.unexplored_mass, 1.0)

    @property
    def normalized(self) -> np.ndarray:
        if self.explored_mass <= 0:
            return np.zeros_like(self.lower)
        return np.clip(self.lower / self.explored_mass, 0.0, 1.0)

    def probs(self, estimate: str = "normalized") -> np.ndarray:
        if self.definition == "authors":
            if estimate != "lower":
                raise ValueError(
                    f"marginalization definition: authors has no {estimate!r} estimate (the "
                    f"authors do not normalise); set the method's params.estimate: lower"
                )
            return np.clip(self.lower, 0.0, 1.0)
        if estimate == "normalized":
            return self.normalized
        if estimate == "lower":
            return self.lower.copy()
        if estimate == "upper":
            return self.upper
        raise ValueError(
            f"marginalization estimate must be normalized|lower|upper, got {estimate!r}"
        )


def nucleus(logprobs: np.ndarray, top_p: float, top_k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and probabilities of the smallest top-p set (capped at top_k), best first."""
    probs = np.exp(logprobs - logprobs.max())
    probs = probs / probs.sum()
    k_max = len(probs) if top_k is None else min(top_k, len(probs))
    order = (
        np.argpartition(-probs, k_max - 1)[:k_max] if k_max < len(probs) else np.arange(len(probs))
    )
    order = order[np.argsort(-probs[order], kind="stable")]
    cum = np.cumsum(probs[order])
    keep = int(np.searchsorted(cum, top_p - 1e-12) + 1)
    keep = min(keep, len(order))
    return order[:keep], probs[order[:keep]]


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
