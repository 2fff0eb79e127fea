"""Settings and results of the token-level marginalisation search, and the top-p set of next
tokens each of its steps expands (:mod:`multilabel_llm.engine.hf.path_search`)."""

from __future__ import annotations

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
