"""Distribution methods of paper §5.2: traces or breakdown scores → id × label probabilities.

Every function returns a *distribution frame*: an ``id`` column plus one float column per
label (dataset label order), values in [0, 1]; for single-label datasets rows sum to 1
(docs/ARCHITECTURE.md). :func:`estimate` dispatches on a method config's ``kind``.

Kinds (config/method/*.yaml):
  compare_to_none        sigmoid(logit_l - logit_none) at the first label step (§5.2.1)
  compare_to_none_platt  the same with Platt scaling fitted on a held-out test set
  hard_predictions       1 - eps for generated labels, eps otherwise (§5.2.1)
  max_over_generations   a label's max probability over every counted label step (§5.2.2)
  unary                  P("reasonable") per label (§5.2.2)
  binary                 Bradley–Terry over pairwise preferences, vs. none (§5.2.2, §C);
                         ``orders: both`` asks each pair both ways to cancel the answer-position
                         preference
  constant               every label gets the same value (the degenerate baseline of §A.6)
  token_probability      full-vocabulary probability of the greedy token that completes a
                         label (Praharaj & Kasundra 2025, estimator 1; 0 when not generated)
  marginal_fixed_place   product of those probabilities over the labels named up to and
                         including this one, in output order (estimator 2)
Marginalisation (needs the model) lives in ``marginalization.py``; supervised methods
(probes, Demux) write their own distribution files.

Label steps are the *counted* ones (``analyses.counted_steps``, docs/analyses.md): labels the
output names, first occurrence only, as the paper's code took them, so a repeated label or an
unparsed output's stray token match adds no step. For parsed outputs without repeats these are
exactly ``Trace.label_steps``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit, softmax

from multilabel_llm import NONE_LABEL
from multilabel_llm.analyses.mechanisms import counted_steps
from multilabel_llm.core.metrics import reference_distribution
from multilabel_llm.core.traces import Trace, TraceMeta
from multilabel_llm.methods.bradley_terry import (
    BTSettings,
    fit_bradley_terry,
    fit_bradley_terry_position,
    hard_outcomes,
)
from multilabel_llm.methods.platt import PlattScaler, PlattSettings, fit_platt, fit_temperature

log = logging.getLogger(__name__)

# The probability floor of hard_predictions / max_over_generations when a method's params give
# no ``epsilon``: the library mirror of config/method/*.yaml (the workflow always passes it).
# A separate knob from the NLL clip (``metrics.NLL_CLIP``, config ``alignment.nll_clip``).
PROBABILITY_FLOOR = 1e-8
TRACE_KINDS = (
    "compare_to_none",
    "compare_to_none_platt",
    "hard_predictions",
    "max_over_generations",
    "token_probability",
    "marginal_fixed_place",
)
TOKEN_LEVEL_KINDS = ("token_probability", "marginal_fixed_place")
BREAKDOWN_KINDS = ("unary", "binary")
KINDS = (*TRACE_KINDS, *BREAKDOWN_KINDS, "constant")


# ---------------------------------------------------------------------------- frames


def distribution_frame(ids: Sequence[str], labels: Sequence[str], values) -> pd.DataFrame:
    values = np.asarray(values, dtype=float).reshape(len(ids), len(labels))
    frame = pd.DataFrame(values, columns=list(labels))
    frame.insert(0, "id", [str(i) for i in ids])
    return frame


def validate_distribution(
    frame: pd.DataFrame, labels: Sequence[str], multilabel: bool, source: str, atol: float = 1e-6
) -> None:
    """Raise ValueError naming ``source`` when ``frame`` breaks the distribution contract."""
    missing = [c for c in ["id", *labels] if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: distribution lacks columns {missing}")
    dup = frame["id"][frame["id"].duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"{source}: duplicate ids {dup[:5]}")
    values = frame[list(labels)].to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"{source}: id {frame['id'].iloc[row]} has values outside [0, 1]: {values[row].tolist()}"
        )
    if not multilabel:
        sums = values.sum(axis=1)
        off = np.abs(sums - 1.0) > atol
        if off.any():
            row = int(np.argmax(off))
            raise ValueError(
                f"{source}: single-label row {frame['id'].iloc[row]} sums to {sums[row]:.6f}, not 1"
            )


def align_to_ids(frame: pd.DataFrame, ids: Sequence[str], labels: Sequence[str], source: str):
    """Rows of ``frame`` in the order of ``ids`` (a test set); raise on missing ids."""
    indexed = frame.assign(id=frame["id"].astype(str)).set_index("id")
    missing = [i for i in ids if i not in indexed.index]
    if missing:
        raise ValueError(
            f"{source}: {len(missing)} test-set ids have no distribution row, e.g. {missing[:5]}"
        )
    return indexed.loc[list(ids), list(labels)].to_numpy(dtype=float)


def normalise_rows(values) -> np.ndarray:
    """Rows scaled to sum 1; an all-zero row becomes uniform."""
    values = np.asarray(values, dtype=float)
    sums = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / max(values.shape[1], 1))
    return np.where(sums > 0, values / np.where(sums > 0, sums, 1.0), uniform)


# ---------------------------------------------------------------------------- traces


def _label_columns(meta: TraceMeta, labels: Sequence[str], source: str) -> tuple[list[int], int]:
    """Indices of ``labels`` and of none in the trace rows (``meta.score_labels`` order)."""
    score_labels = meta.score_labels
    unknown = [lab for lab in labels if lab not in score_labels]
    if unknown:
        raise ValueError(
            f"{source}: traces have no scores for labels {unknown}; trace labels are {meta.labels}"
        )
    return [score_labels.index(lab) for lab in labels], score_labels.index(NONE_LABEL)


def _traces_by_id(traces: Sequence[Trace], ids: Sequence[str], source: str) -> list[Trace]:
    by_id = {str(t.id): t for t in traces}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{source}: {len(missing)} test-set ids have no trace, e.g. {missing[:5]}")
    return [by_id[i] for i in ids]


def _counted(meta: TraceMeta, trace: Trace):
    """The trace's counted label steps (label format from the trace file's meta)."""
    return counted_steps(trace, meta.labels, meta.info.get("label_format")).steps


def first_label_step_logits(meta: TraceMeta, trace: Trace) -> tuple[np.ndarray | None, bool]:
    """Raw logits (labels + none) where the first counted label starts; step 0 if none.

    Returns ``(row, fell_back)``; ``row`` is None when the trace has no generated step at all.
    """
    if not trace.step_logits:
        return None, True
    steps = _counted(meta, trace)
    if steps:
        return np.asarray(trace.step_logits[steps[0].step], dtype=float), False
    return np.asarray(trace.step_logits[0], dtype=float), True


def compare_to_none_features(
    meta: TraceMeta, traces: Sequence[Trace], labels: Sequence[str], multilabel: bool, source: str
) -> tuple[np.ndarray, dict]:
    """Per-example features for compare-to-none: ``d_l = z_l - z_none`` (multi-label) or
    the label logits ``z_l`` (single-label). Rows without any generated step are NaN."""
    cols, none_col = _label_columns(meta, labels, source)
    feats = np.full((len(traces), len(labels)), np.nan)
    stats = {"no_label_step": 0, "no_steps": 0}
    for row, trace in enumerate(traces):
        logits, fell_back = first_label_step_logits(meta, trace)
        if logits is None:
            stats["no_steps"] += 1
            continue
        stats["no_label_step"] += int(fell_back)
        z = logits[cols]
        feats[row] = z - logits[none_col] if multilabel else z
    return feats, stats


def _compare_to_none_probs(feats, multilabel: bool, scaler: PlattScaler | None) -> np.ndarray:
    # a trace without any generated step carries no evidence: d = 0 (0.5) or uniform
    x = np.where(np.isnan(feats).any(axis=1, keepdims=True), 0.0, feats)
    if scaler is not None:
        return scaler.transform(x)
    return expit(x) if multilabel else softmax(x, axis=1)


def compare_to_none(
    meta: TraceMeta,
    traces: Sequence[Trace],
    ids: Sequence[str],
    labels: Sequence[str],
    multilabel: bool,
    scaler: PlattScaler | None = None,
    source: str = "traces",
) -> pd.DataFrame:
    """Paper §5.2.1. Multi-label: ``sigmoid(z_l - z_none)`` (or ``sigmoid(w d + b)`` with a
    scaler). Single-label: ``softmax(z)`` over the labels at the first label step (or
    ``softmax(w z)``). The first label step is the first counted one; traces without one use
    generated step 0 (logged)."""
    chosen = _traces_by_id(traces, ids, source)
    feats, stats = compare_to_none_features(meta, chosen, labels, multilabel, source)
    if stats["no_label_step"] or stats["no_steps"]:
        log.warning(
            "%s: %d traces have no label step (used generated step 0), %d have no step (0.5)",
            source,
            stats["no_label_step"] - stats["no_steps"],
            stats["no_steps"],
        )
    return distribution_frame(ids, labels, _compare_to_none_probs(feats, multilabel, scaler))


def fit_compare_to_none_platt(
    meta: TraceMeta,
    traces: Sequence[Trace],
    ids: Sequence[str],
    human: np.ndarray,
    labels: Sequence[str],
    multilabel: bool,
    settings: PlattSettings | None = None,
    source: str = "calibration traces",
) -> PlattScaler:
    """Fit the compare-to-none scaler on a held-out set: ``human`` is ``(len(ids), L)``."""
    chosen = _traces_by_id(traces, ids, source)
    feats, _ = compare_to_none_features(meta, chosen, labels, multilabel, source)
    human = np.asarray(human, dtype=float)
    if human.shape != feats.shape:
        raise ValueError(f"{source}: human distribution {human.shape} vs features {feats.shape}")
    if multilabel:
        return fit_platt(feats, human, settings)
    return fit_temperature(feats, human, settings)


def fit_platt_on_calibration(
    dataset,
    calibration_ids: Sequence[str],
    calibration_traces: tuple[TraceMeta, list[Trace]],
    scored_ids: Sequence[str],
    settings: PlattSettings | None = None,
    source: str = "calibration traces",
    scored_source: str = "",
) -> PlattScaler:
    """The compare-to-none scaler of ``compare_to_none_platt``, fitted to the human
    distribution of ``dataset`` (a ``CanonicalDataset``) on a held-out calibration set; raises
    when that set shares ids with the scored set ``scored_ids`` (read from ``scored_source``)."""
    overlap = set(calibration_ids) & set(scored_ids)
    if overlap:
        raise ValueError(
            f"{source}: the calibration set shares {len(overlap)} ids with the scored set "
            f"{scored_source}, e.g. {sorted(overlap)[:3]}; Platt scaling needs held-out data"
        )
    human, _, n_gold = reference_distribution(dataset, calibration_ids)
    meta, traces = calibration_traces
    labels, multilabel = list(dataset.labels), bool(dataset.multilabel)
    scaler = fit_compare_to_none_platt(
        meta, traces, calibration_ids, human, labels, multilabel, settings, source
    )
    log.info(
        "platt fit on %d examples (%d gold fallback): %s",
        len(calibration_ids),
        n_gold,
        scaler.to_dict(),
    )
    return scaler


def hard_predictions(
    traces: Sequence[Trace],
    ids: Sequence[str],
    labels: Sequence[str],
    multilabel: bool,
    epsilon: float = PROBABILITY_FLOOR,
    source: str = "traces",
) -> pd.DataFrame:
    """Paper §5.2.1: ``1 - eps`` for each generated label, ``eps`` otherwise.

    An unparseable output predicts nothing (every label ``eps``): this is what the paper's
    single-label NLL/L1 magnitudes imply (docs/metrics.md). Single-label outputs keep only
    their first label, so a row sums to ``1 + (L - 2) eps`` ≈ 1.
    """
    chosen = _traces_by_id(traces, ids, source)
    index = {lab: k for k, lab in enumerate(labels)}
    values = np.full((len(chosen), len(labels)), epsilon)
    unparsed = 0
    for row, trace in enumerate(chosen):
        if trace.pred_labels is None:
            unparsed += 1
            continue
        predicted = [lab for lab in trace.pred_labels if lab in index]
        if not multilabel:
            predicted = predicted[:1]
        for lab in predicted:
            values[row, index[lab]] = 1.0 - epsilon
    if unparsed:
        log.warning(
            "%s: %d of %d outputs unparseable (all labels eps)", source, unparsed, len(chosen)
        )
    return distribution_frame(ids, labels, values)


def max_over_generations(
    meta: TraceMeta,
    traces: Sequence[Trace],
    ids: Sequence[str],
    labels: Sequence[str],
    multilabel: bool,
    epsilon: float = PROBABILITY_FLOOR,
    source: str = "traces",
) -> pd.DataFrame:
    """Paper §5.2.2: each label's maximum probability over every counted label step.

    Values start at ``eps`` (as the reference code does). Only the steps where the output
    starts a label it names count, each label's first one (the reference code's steps): a
    label's probability is never taken from a step the output does not show it at. A trace
    without any counted step falls back to the probabilities of generated step 0.
    Single-label (not in the paper): the maxima are renormalised to sum 1.
    """
    chosen = _traces_by_id(traces, ids, source)
    cols, _ = _label_columns(meta, labels, source)
    values = np.full((len(chosen), len(labels)), epsilon)
    fell_back = 0
    for row, trace in enumerate(chosen):
        steps = _counted(meta, trace)
        probs = np.asarray([trace.step_probs[s.step] for s in steps], dtype=float)
        if not steps:
            if not trace.step_probs:
                continue
            fell_back += 1
            probs = np.asarray(trace.step_probs[:1], dtype=float)
        values[row] = np.maximum(values[row], probs[:, cols].max(axis=0))
    if fell_back:
        log.warning(
            "%s: %d traces have no counted label step (used generated step 0)", source, fell_back
        )
    if not multilabel:
        values = normalise_rows(values)
    return distribution_frame(ids, labels, np.clip(values, 0.0, 1.0))


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
    for step in _counted(meta, trace):
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
    chosen = _traces_by_id(traces, ids, source)
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


# ---------------------------------------------------------------------------- breakdowns


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


BINARY_ORDERS = ("one", "both")
BINARY_COMBINE = ("average", "position_term")


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
    orders = params.get("orders", "one")
    combine = params.get("combine", "average")
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
        bool(params.get("outcomes", False)),
        source,
        **binary_settings(params),
    )
    validate_distribution(fit.frame, labels, multilabel, source)
    return fit


# ---------------------------------------------------------------------------- baselines


def constant_distribution(
    ids: Sequence[str], labels: Sequence[str], multilabel: bool, value: float = 0.1
) -> pd.DataFrame:
    """The degenerate fixed distribution of §A.6: every label ``value`` (multi-label) or
    uniform (single-label). Good NLL/L1 when most labels are absent, useless F1."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"constant distribution value must lie in [0, 1], got {value}")
    fill = value if multilabel else 1.0 / len(labels)
    return distribution_frame(ids, labels, np.full((len(ids), len(labels)), fill))


# ---------------------------------------------------------------------------- dispatch


def bt_settings(params: dict) -> BTSettings:
    keys = ("seed", "lr", "max_iter", "l2", "patience", "tol", "optimizer")
    return BTSettings(**{k: params[k] for k in keys if k in params})


def platt_settings(params: dict) -> PlattSettings:
    keys = ("optimizer", "lr", "epochs")
    return PlattSettings(**{k: params[k] for k in keys if k in params})


def estimate(
    kind: str,
    params: dict,
    ids: Sequence[str],
    labels: Sequence[str],
    multilabel: bool,
    *,
    traces: tuple[TraceMeta, list[Trace]] | None = None,
    unary: pd.DataFrame | None = None,
    binary: pd.DataFrame | None = None,
    scaler: PlattScaler | None = None,
    source: str = "",
) -> pd.DataFrame:
    """Run method ``kind`` with its config ``params`` on the inputs it needs."""
    params = dict(params or {})
    ids = [str(i) for i in ids]
    labels = list(labels)
    eps = float(params.get("epsilon", PROBABILITY_FLOOR))
    if kind in TRACE_KINDS and traces is None:
        raise ValueError(f"method kind {kind!r} needs traces ({source})")
    if kind == "compare_to_none":
        frame = compare_to_none(*traces, ids, labels, multilabel, None, source)
    elif kind == "compare_to_none_platt":
        if scaler is None:
            raise ValueError(f"method kind {kind!r} needs a scaler fitted on the calibration set")
        frame = compare_to_none(*traces, ids, labels, multilabel, scaler, source)
    elif kind == "hard_predictions":
        frame = hard_predictions(traces[1], ids, labels, multilabel, eps, source)
    elif kind == "max_over_generations":
        frame = max_over_generations(*traces, ids, labels, multilabel, eps, source)
    elif kind in TOKEN_LEVEL_KINDS:
        if params.get("definition", "ours") != "ours":
            raise ValueError(
                f"method kind {kind!r}: params.definition {params['definition']!r}: the traces "
                f"give ours only; the authors' definition needs the model (kind marginalization "
                f"with definition: authors, config/method/{kind}_authors.yaml)"
            )
        floor = float(params.get("epsilon", 0.0))
        frame = token_level(*traces, ids, labels, multilabel, kind, floor, source)
    elif kind == "unary":
        if unary is None:
            raise ValueError(f"method kind 'unary' needs unary breakdown scores ({source})")
        norm = params.get("single_label_norm", "sum")
        frame = unary_breakdown(unary, ids, labels, multilabel, norm, source)
    elif kind == "binary":
        if binary is None:
            raise ValueError(f"method kind 'binary' needs binary breakdown scores ({source})")
        frame = estimate_binary(params, ids, labels, multilabel, binary, source).frame
    elif kind == "constant":
        frame = constant_distribution(ids, labels, multilabel, float(params.get("value", 0.1)))
    else:
        raise ValueError(f"unknown method kind {kind!r}; known kinds: {list(KINDS)}")
    # hard predictions on an unparseable single-label output deliberately predict nothing
    atol = 1.0 if kind == "hard_predictions" else 1e-6
    validate_distribution(frame, labels, multilabel, source or kind, atol=atol)
    return frame
