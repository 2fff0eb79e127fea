"""The mechanism analyses of paper §4 and §D as pure functions of traces: per-step statistics,
the second-highest label, label position and order, the example of Fig 1.

Every function takes a list of :class:`~multilabel_llm.core.traces.Trace` (plus the label list, the
gold labels or a small table where needed) and returns a :class:`pandas.DataFrame`, so each
analysis is one CSV and can be tested on hand-built traces. Definitions (also in
docs/analyses.md):

* counted label steps and the *intermediate* / *last* / *cut_off* positions:
  :mod:`multilabel_llm.data.label_steps`.
* generation step ``r`` (1-based): the r-th counted label step. Its distribution ``P_r`` is the
  trace's ``step_probs`` row at that step: a softmax over the first-token logits of
  ``labels + ["none"]`` (paper §3, §A.1), so *none* is one of the candidates for top and
  second-highest.
* top / second-highest: the largest and second-largest entries of ``P_r`` (ties: the label
  that comes first in ``labels + ["none"]`` order wins).
* predicted label at ``r``: the label of the r-th counted step (what the model started).
* ``r+1 pred``: ``P_r`` of the label predicted at ``r+1`` (steps with an ``r+1`` only).
* ``intermediate@r+1``: ``P_{r+1}`` of the second-highest label at ``r`` (same steps).
* *second predicted next*: the second-highest label at ``r`` is the label predicted at ``r+1``.
  It cannot happen when that label is ``none`` or was already generated (at ``r`` or before;
  ``second_case`` says which), so those steps are counted apart, not in the denominators.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from multilabel_llm import NONE_LABEL
from multilabel_llm.core.traces import Trace
from multilabel_llm.data.label_steps import (
    CANDIDATE,
    CUT_OFF,
    INTERMEDIATE,
    LAST,
    SECOND_GENERATED,
    SECOND_NONE,
    STEP_COLUMNS,
    CountedSteps,
    counted_steps,
    label_step_distributions,
)


def entropy_bits(probs: np.ndarray) -> float:
    """Shannon entropy in bits (0 log 0 = 0)."""
    p = np.asarray(probs, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _top_two(probs: np.ndarray) -> tuple[int, int]:
    # stable sort keeps label order among ties, so results do not depend on numpy's quicksort
    order = np.argsort(-probs, kind="stable")
    return int(order[0]), int(order[1]) if probs.size > 1 else -1


def _usable(
    traces: Iterable[Trace],
    labels: Sequence[str],
    require_parse: bool,
    label_format: str | None = None,
) -> list[tuple[Trace, CountedSteps]]:
    """Traces with at least one counted step (and parsed, when ``require_parse``)."""
    out = []
    for trace in traces:
        if require_parse and not trace.parse_ok:
            continue
        counted = counted_steps(trace, labels, label_format)
        if counted.steps:
            out.append((trace, counted))
    return out


def step_statistics(
    traces: Iterable[Trace],
    labels: Sequence[str],
    require_parse: bool = True,
    label_format: str | None = None,
) -> pd.DataFrame:
    """One row per (trace, counted label step): the quantities behind Figs 2, 3, 9, 10 and
    Table 4.

    ``position`` is ``intermediate``, ``last`` or ``cut_off`` (:func:`counted_steps`).
    ``next_outside`` marks an intermediate step with no ``r+1``: an item outside the label set
    (or a cut-off item) follows it. ``second_case`` is ``candidate`` when the second-highest label at ``r`` could be
    predicted later, ``none`` or ``generated`` (already generated at a step <= r) when it cannot.
    ``second_later_step`` is the first step after ``r`` at which the second-highest label of
    ``r`` is predicted (NaN if never). Traces without counted steps, and unparseable ones when
    ``require_parse``, contribute nothing (``run_tables.coverage`` counts them).
    """
    score_labels = [*labels, NONE_LABEL]
    index = {lab: k for k, lab in enumerate(score_labels)}
    rows = []
    for trace, counted in _usable(traces, labels, require_parse, label_format):
        step_labels = counted.labels
        for lab in step_labels:
            if lab not in index:
                raise ValueError(
                    f"trace {trace.id!r}: label step label {lab!r} is not one of {score_labels}"
                )
        dists = label_step_distributions(trace, len(score_labels), counted.steps)
        n_steps = len(step_labels)
        for r in range(n_steps):
            probs = dists[r]
            top, second = _top_two(probs)
            second_label = score_labels[second] if second >= 0 else None
            has_next = r < n_steps - 1
            if second_label == NONE_LABEL:
                case = SECOND_NONE
            elif second_label in step_labels[: r + 1]:
                case = SECOND_GENERATED
            else:
                case = CANDIDATE
            row = {
                "id": trace.id,
                "step": r + 1,
                "n_steps": n_steps,
                "position": (
                    INTERMEDIATE
                    if has_next or counted.went_on
                    else CUT_OFF
                    if counted.open_end
                    else LAST
                ),
                "pred_label": step_labels[r],
                "top_label": score_labels[top],
                "top_prob": float(probs[top]),
                "second_label": second_label,
                "second_prob": float(probs[second]) if second >= 0 else math.nan,
                "top_second_ratio": (
                    float(probs[top] / probs[second])
                    if second >= 0 and probs[second] > 0
                    else math.nan
                ),
                "entropy_bits": entropy_bits(probs),
                "next_label": None,
                "next_outside": not has_next and counted.went_on,
                "next_pred_prob": math.nan,
                "second_prob_next": math.nan,
                "second_case": case if second_label is not None else None,
                "second_is_next": None,
                "second_later_step": math.nan,
            }
            if has_next:
                next_label = step_labels[r + 1]
                row["next_label"] = next_label
                row["next_pred_prob"] = float(probs[index[next_label]])
                if second_label is not None:
                    row["second_prob_next"] = float(dists[r + 1][second])
                    row["second_is_next"] = next_label == second_label
                    later = [k + 1 for k in range(r + 1, n_steps) if step_labels[k] == second_label]
                    row["second_later_step"] = float(later[0]) if later else math.nan
            rows.append(row)
    frame = pd.DataFrame(rows, columns=STEP_COLUMNS)
    return frame.astype({"second_is_next": "boolean", "next_outside": bool})


EXCLUDED_COLUMNS = ["n_next_outside", "n_second_none", "n_second_generated"]


def _intermediate_split(steps: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Intermediate steps where "second predicted next" is possible, and the counts of those
    where it is not (in this order of precedence): no ``r+1`` because an item outside the label
    set follows, second-highest is ``none``, second-highest already generated."""
    inter = steps[steps["position"] == INTERMEDIATE]
    has_next = inter["second_is_next"].notna()
    outside = inter[~has_next]
    inter = inter[has_next]
    excluded = {
        "n_next_outside": len(outside),
        "n_second_none": int((inter["second_case"] == SECOND_NONE).sum()),
        "n_second_generated": int((inter["second_case"] == SECOND_GENERATED).sum()),
    }
    return inter[inter["second_case"] == CANDIDATE], excluded


def second_next_eligible(step_stats: pd.DataFrame) -> pd.DataFrame:
    """The step rows that count in "% second predicted next" and Table 4 (Fig 3 uses it too)."""
    return _intermediate_split(step_stats)[0]


def second_predicted_next(step_stats: pd.DataFrame) -> pd.DataFrame:
    """% of intermediate steps ``r`` whose second-highest label is predicted at ``r+1``.

    One row per step plus an ``all`` row: ``step, n, n_second_next, pct_second_next`` over the
    steps where it is possible, then the steps left out of ``n``: ``n_next_outside`` (no
    ``r+1``: an item outside the label set follows), ``n_second_none``, ``n_second_generated``.
    """
    inter = step_stats[step_stats["position"] == INTERMEDIATE]
    rows = []
    groups = [(str(int(s)), g) for s, g in inter.groupby("step", sort=True)] + [("all", inter)]
    for step, group in groups:
        eligible, excluded = _intermediate_split(group)
        n = len(eligible)
        hits = int(eligible["second_is_next"].astype(bool).sum())
        rows.append(
            {
                "step": step,
                "n": n,
                "n_second_next": hits,
                "pct_second_next": 100.0 * hits / n if n else math.nan,
                **excluded,
            }
        )
    return pd.DataFrame(
        rows, columns=["step", "n", "n_second_next", "pct_second_next", *EXCLUDED_COLUMNS]
    )


def second_never_predicted(step_stats: pd.DataFrame) -> pd.DataFrame:
    """Table 4: among intermediate steps whose second-highest label is NOT predicted at ``r+1``,
    the % where it is never predicted at any later step.

    Columns ``n`` (such steps, where predicting it was possible), ``n_never``, ``pct_never``,
    then the intermediate steps left out because it was impossible: ``n_next_outside``,
    ``n_second_none``, ``n_second_generated`` (as in :func:`second_predicted_next`).
    """
    eligible, excluded = _intermediate_split(step_stats)
    missed = eligible[~eligible["second_is_next"].astype(bool)]
    n = len(missed)
    never = int(missed["second_later_step"].isna().sum())
    return pd.DataFrame(
        [
            {
                "n": n,
                "n_never": never,
                "pct_never": 100.0 * never / n if n else math.nan,
                **excluded,
            }
        ],
        columns=["n", "n_never", "pct_never", *EXCLUDED_COLUMNS],
    )


def second_eventual_position(step_stats: pd.DataFrame, from_step: int = 1) -> pd.DataFrame:
    """Fig 11: where the second-highest label of step ``from_step`` is eventually predicted.

    Only outputs with a step after ``from_step`` count (multi-label generations), and only
    steps where predicting the second-highest label was possible (``second_case`` candidate).
    Rows: ``position`` (the later step, ``from_step+1`` …, or ``never``), ``count`` and
    ``pct_of_predicted`` (share among the cases where it is predicted at all, the histogram the
    paper shows; NaN on the other rows), then the left-out steps as rows ``second_none`` and
    ``second_generated``.
    """
    source = step_stats[(step_stats["step"] == from_step) & step_stats["next_label"].notna()]
    possible = source[source["second_case"] == CANDIDATE]
    later = possible["second_later_step"]
    predicted = later.dropna().astype(int)
    n_predicted = len(predicted)
    rows = []
    for position, count in predicted.value_counts().sort_index().items():
        rows.append(
            {
                "from_step": from_step,
                "position": str(position),
                "count": int(count),
                "pct_of_predicted": 100.0 * count / n_predicted,
            }
        )
    for position, count in (
        ("never", int(later.isna().sum())),
        ("second_none", int((source["second_case"] == SECOND_NONE).sum())),
        ("second_generated", int((source["second_case"] == SECOND_GENERATED).sum())),
    ):
        rows.append(
            {
                "from_step": from_step,
                "position": position,
                "count": count,
                "pct_of_predicted": math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["from_step", "position", "count", "pct_of_predicted"])


def first_step_sorted(
    traces: Iterable[Trace],
    labels: Sequence[str],
    include_none: bool = False,
    require_parse: bool = True,
    label_format: str | None = None,
) -> pd.DataFrame:
    """Fig 4: the label probabilities at the first counted label step, sorted decreasingly.

    Long format ``id, rank, prob`` (rank 1 = top). As in the reference plot, *none* is left
    out by default and the remaining probabilities are shown as they are (not renormalised).
    """
    n_scores = len(labels) + 1
    rows = []
    for trace, counted in _usable(traces, labels, require_parse, label_format):
        probs = label_step_distributions(trace, n_scores, counted.steps[:1])[0]
        if not include_none:
            probs = probs[:-1]
        for rank, prob in enumerate(sorted(probs.tolist(), reverse=True), start=1):
            rows.append({"id": trace.id, "rank": rank, "prob": float(prob)})
    return pd.DataFrame(rows, columns=["id", "rank", "prob"])


def _ordered_unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def output_labels(trace: Trace, labels: Sequence[str] | None = None) -> list[str]:
    """The labels of an output in generation order, without repeats and without *none*.

    Parsed labels when the output parses; else the labels of its counted steps (labels the text
    names whose first token the engine found), which needs ``labels``.
    """
    if trace.parse_ok:
        source = trace.pred_labels
    elif labels is None:
        raise ValueError(f"trace {trace.id!r} does not parse: its labels need the label set")
    else:
        source = counted_steps(trace, labels).labels
    return [lab for lab in _ordered_unique(source) if lab != NONE_LABEL]


def label_position_accuracy(
    traces: Iterable[Trace], gold: dict[str, Iterable[str]], max_position: int | None = None
) -> pd.DataFrame:
    """Fig 5: accuracy of the k-th generated label (is it a gold label?) in multi-label outputs.

    Only parsed outputs with at least two distinct labels count. ``gold`` maps id → gold
    labels; a trace id missing from it is an error. Columns ``position, n, n_correct,
    accuracy``.
    """
    hits: dict[int, list[int]] = {}
    for trace in traces:
        if not trace.parse_ok:
            continue
        labs = output_labels(trace)
        if len(labs) < 2:
            continue
        if trace.id not in gold:
            raise ValueError(f"trace {trace.id!r} has no gold labels in the dataset")
        gold_set = set(gold[trace.id])
        for position, lab in enumerate(labs, start=1):
            if max_position is not None and position > max_position:
                break
            hits.setdefault(position, []).append(int(lab in gold_set))
    rows = [
        {
            "position": position,
            "n": len(values),
            "n_correct": int(sum(values)),
            "accuracy": sum(values) / len(values),
        }
        for position, values in sorted(hits.items())
    ]
    return pd.DataFrame(rows, columns=["position", "n", "n_correct", "accuracy"])


def n_output_labels(trace: Trace, labels: Sequence[str]) -> int:
    """Distinct labels an output carries, *none* left out.

    The reference counts ``max(len(all_scores), len(preds))``; here both sides use the labels
    the output names (:func:`counted_steps`), so a fallback step of a label the output does not
    name (``{"label": ["sadness`` → admiration from the ``ad`` inside "sadness") and a repeat
    (``["joy", "joy"]``) do not make an output multi-label.
    """
    parsed = [x for x in _ordered_unique(trace.pred_labels or []) if x != NONE_LABEL]
    stepped = [x for x in counted_steps(trace, labels).labels if x != NONE_LABEL]
    return max(len(parsed), len(stepped))


def multilabel_output_rate(traces: Iterable[Trace], labels: Sequence[str]) -> pd.DataFrame:
    """Fig 6 (one point): share of outputs with more than one label.

    Counts every trace (an unparseable one counts as multi-label only when its text names
    several labels at label steps). Columns ``n, n_multilabel, pct_multilabel, n_unparsed``.
    """
    traces = list(traces)
    n = len(traces)
    multi = sum(n_output_labels(t, labels) > 1 for t in traces)
    return pd.DataFrame(
        [
            {
                "n": n,
                "n_multilabel": int(multi),
                "pct_multilabel": 100.0 * multi / n if n else math.nan,
                "n_unparsed": int(sum(not t.parse_ok for t in traces)),
            }
        ]
    )


def _follows(sequence: Sequence[str], order: Sequence[str]) -> bool:
    rank = {lab: k for k, lab in enumerate(order)}
    ranks = [rank[lab] for lab in sequence]
    return all(a < b for a, b in zip(ranks, ranks[1:], strict=False))


def label_order_agreement(
    traces: Iterable[Trace], labels: Sequence[str], prompt_order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Table 7 (one setting): % of multi-label outputs whose labels come in alphabetical order
    and in the order the prompt lists them.

    ``prompt_order`` defaults to ``labels``. When it equals the alphabetical order the prompt
    column is NaN (the paper's "-": the two cannot be told apart). Columns ``n, n_alphabetical,
    pct_alphabetical, n_prompt, pct_prompt, prompt_is_alphabetical``.
    """
    prompt_order = list(prompt_order) if prompt_order is not None else list(labels)
    if sorted(prompt_order) != sorted(labels):
        raise ValueError(
            f"prompt label order {prompt_order} is not a permutation of the labels {list(labels)}"
        )
    alphabetical = sorted(labels)
    same = list(prompt_order) == alphabetical
    n = n_alpha = n_prompt = 0
    for trace in traces:
        if not trace.parse_ok:
            continue
        labs = [lab for lab in output_labels(trace) if lab in labels]
        if len(labs) < 2:
            continue
        n += 1
        n_alpha += _follows(labs, alphabetical)
        n_prompt += _follows(labs, prompt_order)
    return pd.DataFrame(
        [
            {
                "n": n,
                "n_alphabetical": n_alpha,
                "pct_alphabetical": 100.0 * n_alpha / n if n else math.nan,
                "n_prompt": math.nan if same else n_prompt,
                "pct_prompt": math.nan if same or not n else 100.0 * n_prompt / n,
                "prompt_is_alphabetical": same,
            }
        ]
    )


def example_steps(
    traces: Sequence[Trace],
    labels: Sequence[str],
    human: dict[str, dict[str, float]],
    label_format: str | None = None,
) -> pd.DataFrame:
    """Fig 1: one example's label distribution at every counted label step, next to the human
    one.

    The example is the parsed output with the most distinct labels (then the most label steps,
    then the smallest id), so the figure shows the step-by-step drift the paper opens with.
    Columns ``id, text_out, step`` ("label 1", "label 2", …, "human"), ``label``, ``prob`` and
    ``generated`` (the label the model generated at that step). Empty when no output has a
    label step.
    """
    columns = ["id", "text_out", "step", "label", "prob", "generated"]
    usable = _usable(traces, labels, True, label_format)
    if not usable:
        return pd.DataFrame(columns=columns)
    trace, counted = min(
        usable,
        key=lambda tc: (-len(set(tc[1].labels)), -len(tc[1].steps), tc[0].id),
    )
    score_labels = [*labels, NONE_LABEL]
    rows = []
    dists = label_step_distributions(trace, len(score_labels), counted.steps)
    for k, (step, row) in enumerate(zip(counted.steps, dists, strict=True), start=1):
        for label, prob in zip(score_labels, row, strict=True):
            rows.append(
                (trace.id, trace.text_out, f"label {k}", label, float(prob), label == step.label)
            )
    for label in labels:
        rows.append(
            (trace.id, trace.text_out, "human", label, human.get(trace.id, {}).get(label), False)
        )
    return pd.DataFrame(rows, columns=columns)
