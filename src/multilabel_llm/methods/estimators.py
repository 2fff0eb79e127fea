"""Distribution methods of paper §5.2: traces or breakdown scores → id × label probabilities.

Every function returns a *distribution frame* (:mod:`multilabel_llm.core.distributions`): an
``id`` column plus one float column per label (dataset label order), values in [0, 1]; for
single-label datasets rows sum to 1 (docs/ARCHITECTURE.md).

The kinds, their producers, inputs and params are declared in
:mod:`multilabel_llm.methods.registry`; :func:`estimate` runs the registry's function for a
kind. This module holds the trace estimators of §5.2.1–5.2.2 (compare-to-none with and without
Platt scaling, hard predictions, max over generations) and the constant baseline; the
token-level estimators are in ``token_level.py``, the breakdowns in ``breakdown.py``,
marginalisation (needs the model) in ``engine/hf/marginalization.py``; supervised methods
(probes, Demux) write their own distribution files.

Label steps are the *counted* ones (``data.label_steps.counted_steps``, docs/analyses.md): labels the
output names, first occurrence only, as the paper's code took them, so a repeated label or an
unparsed output's stray token match adds no step. For parsed outputs without repeats these are
exactly ``Trace.label_steps``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, softmax

from multilabel_llm import NONE_LABEL
from multilabel_llm.core.distributions import (
    distribution_frame,
    normalise_rows,
    validate_distribution,
)
from multilabel_llm.core.metrics import reference_distribution
from multilabel_llm.core.traces import Trace, TraceMeta
from multilabel_llm.data.label_steps import counted_steps
from multilabel_llm.methods.platt import PlattScaler, PlattSettings, fit_platt, fit_temperature
from multilabel_llm.methods.registry import (
    ESTIMATED_KINDS,
    METHOD_KINDS,
    PROBABILITY_FLOOR,
    implementation,
    param_default,
)

log = logging.getLogger(__name__)


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


def traces_by_id(traces: Sequence[Trace], ids: Sequence[str], source: str) -> list[Trace]:
    by_id = {str(t.id): t for t in traces}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{source}: {len(missing)} test-set ids have no trace, e.g. {missing[:5]}")
    return [by_id[i] for i in ids]


def counted_label_steps(meta: TraceMeta, trace: Trace):
    """The trace's counted label steps (label format from the trace file's meta)."""
    return counted_steps(trace, meta.labels, meta.info.get("label_format")).steps


def first_label_step_logits(meta: TraceMeta, trace: Trace) -> tuple[np.ndarray | None, bool]:
    """Raw logits (labels + none) where the first counted label starts; step 0 if none.

    Returns ``(row, fell_back)``; ``row`` is None when the trace has no generated step at all.
    """
    if not trace.step_logits:
        return None, True
    steps = counted_label_steps(meta, trace)
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
    chosen = traces_by_id(traces, ids, source)
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
    chosen = traces_by_id(traces, ids, source)
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
    chosen = traces_by_id(traces, ids, source)
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
    chosen = traces_by_id(traces, ids, source)
    cols, _ = _label_columns(meta, labels, source)
    values = np.full((len(chosen), len(labels)), epsilon)
    fell_back = 0
    for row, trace in enumerate(chosen):
        steps = counted_label_steps(meta, trace)
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


def platt_settings(params: dict) -> PlattSettings:
    keys = ("optimizer", "lr", "epochs")
    return PlattSettings(**{k: params[k] for k in keys if k in params})


def estimate_compare_to_none(kind, params, ids, labels, multilabel, inputs, source):
    """Kind ``compare_to_none`` (no params beyond ``traces_from``, which the DAG reads)."""
    return compare_to_none(*inputs["traces"], ids, labels, multilabel, None, source)


def estimate_compare_to_none_platt(kind, params, ids, labels, multilabel, inputs, source):
    """Kind ``compare_to_none_platt``: the scaler is fitted beforehand on the calibration set
    (:func:`fit_platt_on_calibration`)."""
    if inputs["scaler"] is None:
        raise ValueError(f"method kind {kind!r} needs a scaler fitted on the calibration set")
    return compare_to_none(*inputs["traces"], ids, labels, multilabel, inputs["scaler"], source)


def estimate_hard_predictions(kind, params, ids, labels, multilabel, inputs, source):
    """Kind ``hard_predictions`` with its ``epsilon``."""
    eps = float(params.get("epsilon", param_default(kind, "epsilon")))
    return hard_predictions(inputs["traces"][1], ids, labels, multilabel, eps, source)


def estimate_max_over_generations(kind, params, ids, labels, multilabel, inputs, source):
    """Kind ``max_over_generations`` with its ``epsilon``."""
    eps = float(params.get("epsilon", param_default(kind, "epsilon")))
    return max_over_generations(*inputs["traces"], ids, labels, multilabel, eps, source)


def estimate_constant(kind, params, ids, labels, multilabel, inputs, source):
    """Kind ``constant`` with its ``value``."""
    value = float(params.get("value", param_default(kind, "value")))
    return constant_distribution(ids, labels, multilabel, value)


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
    """Run method ``kind`` with its config ``params`` on the inputs it needs: the registry's
    function for the kind (:data:`multilabel_llm.methods.registry.METHOD_KINDS`)."""
    params = dict(params or {})
    ids = [str(i) for i in ids]
    labels = list(labels)
    if kind not in ESTIMATED_KINDS:
        raise ValueError(f"unknown method kind {kind!r}; known kinds: {list(ESTIMATED_KINDS)}")
    if "traces" in METHOD_KINDS[kind].inputs and traces is None:
        raise ValueError(f"method kind {kind!r} needs traces ({source})")
    inputs = {"traces": traces, "unary": unary, "binary": binary, "scaler": scaler}
    frame = implementation(kind)(kind, params, ids, labels, multilabel, inputs, source)
    atol = METHOD_KINDS[kind].row_sum_tolerance
    validate_distribution(frame, labels, multilabel, source or kind, atol=atol)
    return frame
