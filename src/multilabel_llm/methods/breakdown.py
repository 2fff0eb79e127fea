"""Breakdown methods of paper §5.2.2: the model judges each label (unary) or each pair (binary).

``unary``: ``P(l) = P("reasonable" | text, l)``. ``binary``: a Bradley–Terry fit per example
over the pairwise preferences (labels + none for multi-label), optionally with both answer
orders to cancel the answer-position preference (docs/metrics.md). The breakdown scores come
from rule score_breakdown (:mod:`multilabel_llm.engine.breakdown`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit, softmax

from multilabel_llm import NONE_LABEL
from multilabel_llm.core.distributions import (
    align_to_ids,
    distribution_frame,
    normalise_rows,
    validate_distribution,
)
from multilabel_llm.methods.bradley_terry import (
    BTSettings,
    fit_bradley_terry,
    fit_bradley_terry_position,
    hard_outcomes,
)
from multilabel_llm.methods.registry import METHOD_KINDS, param_default


def bt_settings(params: dict) -> BTSettings:
    keys = ("seed", "lr", "max_iter", "l2", "patience", "tol", "optimizer")
    return BTSettings(**{k: params[k] for k in keys if k in params})


def unary_breakdown(
    unary: pd.DataFrame,
    ids: Sequence[str],
    labels: Sequence[str],
    multilabel: bool,
    single_label_norm: str = "sum",
    source: str = "unary.parquet",
) -> pd.DataFrame:
    """Paper §5.2.2: ``P(l) = P("reasonable" | text, l)``, unnormalised for multi-label.

    Single-label: ``single_label_norm="sum"`` divides by the row sum; ``"softmax"`` applies a
    softmax over the P(reasonable) values (what the reference code does).
    """
    needed = {"id", "label", "p_reasonable"}
    if not needed <= set(unary.columns):
        raise ValueError(f"{source}: needs columns {sorted(needed)}, has {list(unary.columns)}")
    frame = unary.assign(id=unary["id"].astype(str))
    dup = frame.duplicated(["id", "label"])
    if dup.any():
        raise ValueError(
            f"{source}: duplicate (id, label) rows, e.g. {frame[dup].iloc[0].tolist()}"
        )
    wide = frame.pivot(index="id", columns="label", values="p_reasonable")
    missing_labels = [lab for lab in labels if lab not in wide.columns]
    if missing_labels:
        raise ValueError(f"{source}: no unary scores for labels {missing_labels}")
    values = align_to_ids(wide.reset_index(), ids, labels, source)
    if np.isnan(values).any():
        row, col = np.argwhere(np.isnan(values))[0]
        raise ValueError(f"{source}: id {ids[row]} has no unary score for label {labels[col]!r}")
    if not multilabel:
        if single_label_norm == "softmax":
            values = softmax(values, axis=1)
        elif single_label_norm == "sum":
            values = normalise_rows(values)
        else:
            raise ValueError(
                f"unary single_label_norm must be 'sum' or 'softmax', got {single_label_norm!r}"
            )
    return distribution_frame(ids, labels, values)


# the allowed values of a binary method's params.orders / params.combine
BINARY_ORDERS = tuple(METHOD_KINDS["binary"].params["orders"]["enum"])
BINARY_COMBINE = tuple(METHOD_KINDS["binary"].params["combine"]["enum"])


def _oriented_probs(
    binary: pd.DataFrame, ids: Sequence[str], items: Sequence[str], source: str
) -> dict[tuple[int, int], np.ndarray]:
    """``{(i, j): p (n_ids,)}``: P(answer "a") when item i is shown as a and j as b (NaN where
    an id was not asked in that order). Rows of other ids or items (none on single-label
    datasets) are skipped; a repeated (id, a, b) row is an error, not silently overwritten."""
    needed = {"id", "label_a", "label_b", "p_a"}
    if not needed <= set(binary.columns):
        raise ValueError(f"{source}: needs columns {sorted(needed)}, has {list(binary.columns)}")
    pos = {lab: k for k, lab in enumerate(items)}
    row_of = {i: r for r, i in enumerate(ids)}
    out: dict[tuple[int, int], np.ndarray] = {}
    for rid, a, b, p in binary[["id", "label_a", "label_b", "p_a"]].itertuples(index=False):
        rid = str(rid)
        if rid not in row_of or a not in pos or b not in pos:
            continue
        col = out.setdefault((pos[a], pos[b]), np.full(len(ids), np.nan))
        if not np.isnan(col[row_of[rid]]):
            raise ValueError(f"{source}: id {rid} asks ({a!r}, {b!r}) more than once")
        col[row_of[rid]] = p
    return out


def pairwise_matrix(
    binary: pd.DataFrame,
    ids: Sequence[str],
    items: Sequence[str],
    source: str = "binary.parquet",
    orders: str = "one",
) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise probabilities ``(n_ids, n_columns)`` and their ``pairs`` ``(n_columns, 2)``.

    ``orders="one"``: one column per unordered pair ``(i, j)``, ``i < j``, the probability that
    i beats j; a pair asked as (b, a) contributes ``1 - p_a``; a pair asked both ways is an
    error (that data needs ``orders: both``). ``orders="both"``: every unordered pair must be
    asked both ways; the first half of the columns are the pairs ``(i, j)`` with i shown first
    (``p_a``), the second half the same pairs asked as ``(j, i)``.
    """
    pairs, forward, backward = _pair_columns(binary, ids, items, source)
    return _orient(pairs, forward, backward, ids, items, source, orders)


def _pair_columns(binary, ids, items, source):
    """Unordered pairs ``(i, j)``, ``i < j``, and P("a") asked as (i, j) / as (j, i)."""
    asked = _oriented_probs(binary, ids, items, source)
    pairs = np.array([(i, j) for i in range(len(items)) for j in range(i + 1, len(items))])
    pairs = pairs.reshape(-1, 2)
    nan = np.full(len(ids), np.nan)
    forward = np.stack([asked.get((i, j), nan) for i, j in pairs], axis=1)
    backward = np.stack([asked.get((j, i), nan) for i, j in pairs], axis=1)
    return pairs, forward, backward


def _orient(pairs, forward, backward, ids, items, source, orders):
    if orders not in BINARY_ORDERS:
        raise ValueError(f"binary breakdown orders must be one of {BINARY_ORDERS}, got {orders!r}")
    if orders == "both":
        probs = np.concatenate([forward, backward], axis=1)
        pairs = np.concatenate([pairs, pairs[:, ::-1]])
        missing = np.isnan(probs)
        if missing.any():
            row, col = np.argwhere(missing)[0]
            a, b = items[pairs[col][0]], items[pairs[col][1]]
            raise ValueError(
                f"{source}: orders: both needs every pair asked both ways, but id {ids[row]} "
                f"was never asked with a = {a!r}, b = {b!r} (is the reversed-order scoring "
                f"binary_reversed.parquet among the inputs?)"
            )
        return probs, pairs
    both = ~np.isnan(forward) & ~np.isnan(backward)
    if both.any():
        row, col = np.argwhere(both)[0]
        a, b = items[pairs[col][0]], items[pairs[col][1]]
        raise ValueError(
            f"{source}: id {ids[row]} asks {a!r} vs {b!r} in both orders; a method with "
            f"orders: one takes one order per pair (set params.orders: both to combine them)"
        )
    probs = np.where(np.isnan(forward), 1.0 - backward, forward)
    if np.isnan(probs).any():
        row, col = np.argwhere(np.isnan(probs))[0]
        a, b = items[pairs[col][0]], items[pairs[col][1]]
        raise ValueError(f"{source}: id {ids[row]} has no comparison of {a!r} and {b!r}")
    return probs, pairs


class BinaryFit(NamedTuple):
    """A binary-breakdown fit: the distribution frame, the Bradley–Terry scores
    ``(n_ids, n_items)``, the per-example position terms (None unless fitted) and the run's
    position-bias summary (:func:`position_bias`)."""

    frame: pd.DataFrame
    scores: np.ndarray
    position_term: np.ndarray | None
    bias: dict


def position_bias(
    probs: np.ndarray,
    scores: np.ndarray,
    position_term: np.ndarray | None = None,
    orders: str = "one",
    combine: str | None = None,
) -> dict:
    """How much a run's answers follow the prompt's order rather than the labels.

    ``mean_p_a``: mean P("a") over every asked prompt (0.5 without a position preference);
    ``share_a``: share of prompts whose more likely answer is "a" (ties count half);
    ``position_term``: mean fitted home advantage (logits, > 0 favours "a"), NaN when not
    fitted; ``score_position_corr``: Spearman correlation between an item's position in the
    label list (none last) and its mean centred score — near +1 when later labels win only
    because they are shown as "b". NaN when every item has the same mean score.
    """
    scores = np.asarray(scores, dtype=float)
    mean_scores = (scores - scores.mean(axis=1, keepdims=True)).mean(axis=0)
    corr = float("nan")
    if len(mean_scores) > 1 and np.ptp(mean_scores) > 1e-9:
        from scipy.stats import spearmanr  # here: scipy.stats costs ~0.5 s per job's import

        corr = float(spearmanr(np.arange(len(mean_scores)), mean_scores).statistic)
    return {
        "orders": orders,
        "combine": combine if orders == "both" else "none",
        "n_examples": int(probs.shape[0]),
        "n_prompts": int(probs.size),
        "mean_p_a": float(probs.mean()) if probs.size else float("nan"),
        "share_a": float(hard_outcomes(probs).mean()) if probs.size else float("nan"),
        "position_term": float(np.mean(position_term))
        if position_term is not None and len(position_term)
        else float("nan"),
        "score_position_corr": corr,
    }


def binary_breakdown(
    binary: pd.DataFrame,
    ids: Sequence[str],
    labels: Sequence[str],
    multilabel: bool,
    settings: BTSettings | None = None,
    outcomes: bool = False,
    source: str = "binary.parquet",
    orders: str = "one",
    combine: str = "average",
) -> BinaryFit:
    """Paper §5.2.2: a Bradley–Terry fit per example over labels (+ none for multi-label).

    Multi-label: ``P(l) = sigmoid(s_l - s_none)``. Single-label: ``softmax(s)`` over labels.
    ``outcomes=True`` rounds each pairwise probability to 0/1 first (§C).

    ``orders="one"`` is the paper's method: each pair asked once (in label order). With
    ``orders="both"`` every pair is asked both ways and ``combine`` removes the answer-position
    preference: ``"average"`` fits ``p_{i>j} = (P(a | i, j) + 1 - P(a | j, i)) / 2``;
    ``"position_term"`` fits ``P(a | i, j) = sigmoid(s_i - s_j + h)`` on all asked prompts.
    """
    if orders == "both" and combine not in BINARY_COMBINE:
        raise ValueError(
            f"binary breakdown combine must be one of {BINARY_COMBINE}, got {combine!r}"
        )
    items = [*labels, NONE_LABEL] if multilabel else list(labels)
    pairs, forward, backward = _pair_columns(binary, ids, items, source)
    asked, asked_pairs = _orient(pairs, forward, backward, ids, items, source, orders)
    # P("a") as asked: for one order, the stored orientation of each pair
    bias_probs = asked if orders == "both" else np.where(np.isnan(forward), backward, forward)
    probs = hard_outcomes(asked) if outcomes else asked
    home = None
    if orders == "one":
        scores = fit_bradley_terry(probs, asked_pairs, len(items), settings)
    elif combine == "average":
        half = asked_pairs.shape[0] // 2
        averaged = (probs[:, :half] + 1.0 - probs[:, half:]) / 2.0
        scores = fit_bradley_terry(averaged, asked_pairs[:half], len(items), settings)
    else:
        scores, home = fit_bradley_terry_position(probs, asked_pairs, len(items), settings)
    if multilabel:
        values = expit(scores[:, :-1] - scores[:, -1:])
    else:
        values = softmax(scores, axis=1)
    bias = position_bias(bias_probs, scores, home, orders, combine)
    return BinaryFit(distribution_frame(ids, labels, values), scores, home, bias)


def binary_settings(params: dict) -> dict:
    """``orders`` / ``combine`` of a binary method's params, checked, with the paper's
    defaults (one order; ``combine`` only matters for both orders)."""
    orders = params.get("orders", param_default("binary", "orders"))
    combine = params.get("combine", param_default("binary", "combine"))
    if orders not in BINARY_ORDERS:
        raise ValueError(
            f"method params.orders must be one of {BINARY_ORDERS} (pairs asked in label order "
            f"only, or in both orders), got {orders!r}"
        )
    if combine not in BINARY_COMBINE:
        raise ValueError(f"method params.combine must be one of {BINARY_COMBINE}, got {combine!r}")
    if orders == "one" and "combine" in params and combine != "average":
        raise ValueError(
            f"method params.combine: {combine} needs params.orders: both; with one order the "
            f"position term cannot be told apart from a label's position in the list"
        )
    return {"orders": orders, "combine": combine}


def estimate_binary(
    params: dict,
    ids: Sequence[str],
    labels: Sequence[str],
    multilabel: bool,
    binary: pd.DataFrame,
    source: str = "binary.parquet",
) -> BinaryFit:
    """A ``kind: binary`` method from its config ``params`` (the ``estimate_binary`` rule)."""
    params = dict(params or {})
    fit = binary_breakdown(
        binary,
        [str(i) for i in ids],
        list(labels),
        multilabel,
        bt_settings(params),
        bool(params.get("outcomes", param_default("binary", "outcomes"))),
        source,
        **binary_settings(params),
    )
    validate_distribution(fit.frame, labels, multilabel, source)
    return fit


def estimate_unary(kind, params, ids, labels, multilabel, inputs, source) -> pd.DataFrame:
    """Kind ``unary`` from its config params."""
    if inputs["unary"] is None:
        raise ValueError(f"method kind 'unary' needs unary breakdown scores ({source})")
    norm = params.get("single_label_norm", param_default(kind, "single_label_norm"))
    return unary_breakdown(inputs["unary"], ids, labels, multilabel, norm, source)


def estimate_binary_frame(kind, params, ids, labels, multilabel, inputs, source) -> pd.DataFrame:
    """Kind ``binary`` from its config params: the distribution only (see estimate_binary)."""
    if inputs["binary"] is None:
        raise ValueError(f"method kind 'binary' needs binary breakdown scores ({source})")
    return estimate_binary(params, ids, labels, multilabel, inputs["binary"], source).frame
