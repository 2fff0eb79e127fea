"""The mechanism analyses of paper §4 and §D as pure functions of traces.

Every function takes a list of :class:`~multilabel_llm.core.traces.Trace` (plus the label list, the
gold labels or a small table where needed) and returns a :class:`pandas.DataFrame`, so each
analysis is one CSV and can be tested on hand-built traces. Definitions (also in
docs/analyses.md):

* counted label steps (:func:`counted_steps`): the trace's ``label_steps`` in generation order,
  keeping only labels the output names (its parsed items; for an unparsed output the labels its
  text names as whole words) and only each label's FIRST occurrence, as the paper's code did.
* generation step ``r`` (1-based): the r-th counted label step. Its distribution ``P_r`` is the
  trace's ``step_probs`` row at that step: a softmax over the first-token logits of
  ``labels + ["none"]`` (paper §3, §A.1), so *none* is one of the candidates for top and
  second-highest.
* *intermediate*: a step after which the model goes on: another counted step follows, or a list
  item outside the label set does (the model started another label; there is then no ``r+1``).
  *last*: the final counted step when no such item follows it. A repeat of a label already
  generated is not going on. *cut_off*: the final counted step of a list the generation
  budget cut right after it (last or not cannot be known; in neither group).
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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multilabel_llm import NONE_LABEL
from multilabel_llm.core.traces import LabelStep, Trace
from multilabel_llm.data.prompts import fallback_labels, parse_output

LAST = "last"
INTERMEDIATE = "intermediate"
CUT_OFF = "cut_off"  # the list was cut off right after this step: last or not is unknown

# second_case: can the second-highest label at r still be predicted at r+1?
CANDIDATE = "candidate"
SECOND_NONE = "none"
SECOND_GENERATED = "generated"

STEP_COLUMNS = [
    "id",
    "step",
    "n_steps",
    "position",
    "pred_label",
    "top_label",
    "top_prob",
    "second_label",
    "second_prob",
    "top_second_ratio",
    "entropy_bits",
    "next_label",
    "next_outside",
    "next_pred_prob",
    "second_prob_next",
    "second_case",
    "second_is_next",
    "second_later_step",
]


@dataclass(frozen=True)
class CountedSteps:
    """The label steps of one output that the analyses count (see :func:`counted_steps`).

    ``went_on``: a list item outside the label set (or, in a list cut off by the generation
    budget, the start of another item) follows the last counted step, so that step is
    intermediate (the model went on) although no counted step follows. ``open_end``: the list
    was cut off right after the last counted step, which is then neither last nor intermediate
    (position ``cut_off``: nobody knows whether the model would have gone on). ``n_repeats`` and
    ``n_unnamed`` count the trace's label steps left out (repeats of an earlier label; labels the
    output does not name, e.g. a fallback match of a label's first token inside another word).
    """

    steps: tuple[LabelStep, ...]
    went_on: bool = False
    n_repeats: int = 0
    n_unnamed: int = 0
    open_end: bool = False

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.steps]


def named_labels(trace: Trace, labels: Sequence[str]) -> set[str]:
    """Labels (and ``none``) the output names: its parsed labels, or, for an output that does
    not parse, the labels (and ``none``) its text names as whole words (``prompts.fallback_labels``,
    the engine's fallback: ``{"label": ["sadness`` names sadness only)."""
    if trace.parse_ok:
        return {*trace.pred_labels, NONE_LABEL}
    return set(fallback_labels(trace.text_out, [*labels, NONE_LABEL]))


def _format_of(text: str, label_format: str | None) -> str:
    # traces record the prompt's label format in TraceMeta.info; hand-built ones may not
    if label_format:
        return label_format
    return "json" if "{" in text else "comma"


def _after_last(
    trace: Trace, labels: Sequence[str], label_format: str | None, last_label: str
) -> tuple[bool, bool]:
    """(went_on, open_end) after ``last_label``'s first occurrence in a parsed output.

    went_on: a list item outside the label set follows it, or (list cut off by the budget) a
    comma does, i.e. the model had started another item. open_end: the list was cut off right
    after it, so whether it was the last label cannot be known.
    """
    fmt = _format_of(trace.text_out, label_format)
    parsed = parse_output(trace.text_out, labels, fmt)
    if parsed.labels is None:
        return False, False
    truncated = parsed.truncated or bool(trace.extra.get("truncated"))
    spans = parsed.spans
    if parsed.unknown:
        # parse again with the outside items as labels: their positions come back in the spans
        spans = parse_output(trace.text_out, [*labels, *parsed.unknown], fmt).spans
    start = next((pos for lab, pos in spans if lab == last_label), None)
    if start is None:
        return False, False
    outside = {item.strip().lower() for item in parsed.unknown}
    if any(lab.lower() in outside and pos > start for lab, pos in spans):
        return True, False
    if truncated:
        went_on = trace.text_out.find(",", start) >= 0
        return went_on, not went_on
    return False, False


def counted_steps(
    trace: Trace, labels: Sequence[str], label_format: str | None = None
) -> CountedSteps:
    """The label steps the analyses count, in generation order.

    1. Only labels the output names (:func:`named_labels`) count. The engine places an
       unparsed output's steps at whole-word matches; this rule still guards traces written
       by older engines (steps at the first fragment of a label's first token).
    2. A label's FIRST occurrence only counts (the paper's code took the first occurrence of each
       label token): ``["sadness", "sadness"]`` is one step, and it is last.
    3. ``went_on``: for a parsed output, an item outside the label set (``["joy", "happy"]``)
       after the last counted label makes that step intermediate (the model went on); so does
       the start of another item in a list cut off by the budget (``["joy", "sa``).
    4. ``open_end``: a list cut off right after its last counted label (``["joy", "sadness``)
       leaves that step's position unknown (``cut_off``).

    ``label_format`` (``json``/``comma``, ``TraceMeta.info["label_format"]``) is needed for
    rule 3 only; without it an output containing ``{`` is read as JSON.
    """
    named = named_labels(trace, labels)
    seen: set[str] = set()
    kept: list[LabelStep] = []
    n_repeats = n_unnamed = 0
    for step in sorted(trace.label_steps, key=lambda s: s.step):
        if step.label not in named:
            n_unnamed += 1
        elif step.label in seen:
            n_repeats += 1
        else:
            seen.add(step.label)
            kept.append(step)
    went_on = open_end = False
    if kept and trace.parse_ok:
        went_on, open_end = _after_last(trace, labels, label_format, kept[-1].label)
    return CountedSteps(tuple(kept), went_on, n_repeats, n_unnamed, open_end)


def _check_row(trace: Trace, row: Sequence[float], n_scores: int, step: int) -> np.ndarray:
    probs = np.asarray(row, dtype=float)
    if probs.shape != (n_scores,):
        raise ValueError(
            f"trace {trace.id!r}: step_probs[{step}] has {probs.size} entries, expected "
            f"{n_scores} (the labels + 'none')"
        )
    return probs


def label_step_distributions(
    trace: Trace, n_scores: int, steps: Sequence[LabelStep] | None = None
) -> np.ndarray:
    """``(R, n_scores)`` probabilities at ``steps`` (default: all the trace's label steps)."""
    rows = []
    for label_step in trace.label_steps if steps is None else steps:
        if not 0 <= label_step.step < len(trace.step_probs):
            raise ValueError(
                f"trace {trace.id!r}: label step {label_step.step} ({label_step.label!r}) is "
                f"outside step_probs (length {len(trace.step_probs)})"
            )
        rows.append(_check_row(trace, trace.step_probs[label_step.step], n_scores, label_step.step))
    return np.asarray(rows, dtype=float).reshape(len(rows), n_scores)


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
    ``require_parse``, contribute nothing (:func:`coverage` counts them).
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


# region → column prefixes accepted in attention.csv (the engine writes ``first_*``)
ATTENTION_REGIONS = {
    "input": ("input",),
    "label": ("label",),
    "first_token": ("first_token", "first"),
}


def attention_summary(attention: pd.DataFrame, min_step: int | None = None) -> pd.DataFrame:
    """Table 6 (one model/dataset): average % attention per token to each prompt region.

    ``attention`` (the engine's ``attention.csv``) has one row per (example, label step after
    the first) with ``<region>_mass`` (attention of the position predicting that label's first
    token, heads then layers averaged) and ``<region>_count`` (tokens in the region) for
    region in input / label / first_token (or ``first``). Per token attention = mass / count,
    averaged over rows, in % (``pct_per_token_<region>``, the paper's numbers);
    ``share_<region>`` is the mean mass in %, the cumulative split the paper quotes (~80/20).

    Step numbering: the engine's ``step`` column is the 0-based index of the label step (its
    first row per example is ``step`` 1, the second label). Here, as in ``step_stats.csv`` and
    the paper ("when they generate the second or higher label"), generation steps count from
    1: ``r = step + 1``, so the rows cover ``r >= 2``. ``min_step`` keeps rows with
    ``r >= min_step``; ``from_step``/``to_step`` give the range of ``r`` summarised.
    """
    frame = attention
    if "step" in attention.columns:
        r = attention["step"] + 1
    elif min_step is not None:
        raise ValueError(f"attention table has no 'step' column (columns: {list(attention)})")
    if min_step is not None:
        frame = attention[r >= min_step]
    out: dict[str, float] = {"n": len(frame)}
    if "step" in attention.columns:
        kept = r.loc[frame.index]
        out["from_step"] = int(kept.min()) if len(kept) else math.nan
        out["to_step"] = int(kept.max()) if len(kept) else math.nan
    for region, prefixes in ATTENTION_REGIONS.items():
        prefix = next((p for p in prefixes if f"{p}_mass" in frame.columns), None)
        if prefix is None:
            raise ValueError(
                f"attention table lacks '{prefixes[0]}_mass' (columns: {list(attention)})"
            )
        mass, count = f"{prefix}_mass", f"{prefix}_count"
        if count in frame.columns:
            valid = frame[frame[count] > 0]
            out[f"pct_per_token_{region}"] = (
                float((valid[mass] / valid[count]).mean() * 100) if len(valid) else math.nan
            )
        out[f"share_{region}"] = float(frame[mass].mean() * 100) if len(frame) else math.nan
    return pd.DataFrame([out])


PROBE_VARIANTS = {"gold": "Gold", "pred": "Pred", "pred2+": "Pred 2+", "perf": "Perf"}


def normalise_probe_variant(name: str) -> str:
    """Map spellings such as ``pred_2plus``/``Pred 2+``/``nonfirst`` to the paper's names."""
    key = str(name).strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    key = key.replace("2plus", "2+").replace("nonfirst", "pred2+").replace("model", "perf")
    if key in PROBE_VARIANTS:
        return PROBE_VARIANTS[key]
    return str(name)


def probe_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Figs 7/15: probe micro-F1 per variant with the paper's variant names, in paper order.

    ``scores`` needs ``variant`` and ``micro_f1``; other columns (dataset, model, n) are kept.
    """
    missing = {"variant", "micro_f1"} - set(scores.columns)
    if missing:
        raise ValueError(f"probe scores lack columns {sorted(missing)} (have {list(scores)})")
    out = scores.copy()
    out["variant"] = out["variant"].map(normalise_probe_variant)
    order = {name: k for k, name in enumerate(PROBE_VARIANTS.values())}
    out["_order"] = out["variant"].map(lambda v: order.get(v, len(order)))
    keys = [c for c in ("dataset", "model") if c in out.columns]
    return out.sort_values([*keys, "_order"], kind="stable").drop(columns="_order")


def base_vs_instruct(alignment: pd.DataFrame, models: dict[str, dict]) -> pd.DataFrame:
    """Fig 12: example-F1 and NLL of base vs instruction-tuned models per method.

    ``alignment`` is the concatenation of the alignment tables (``method, model, nll,
    example_f1`` and optionally ``dataset``); ``models`` maps model slot → its config (needs
    ``instruct``; ``family`` groups models, default the slot name). Values are averaged over
    datasets and prompts. Columns ``family, variant (base|instruct), method, metric
    (example_f1|nll), value, n_datasets``. Models absent from ``models`` are skipped.
    """
    missing = {"method", "model", "nll", "example_f1"} - set(alignment.columns)
    if missing:
        raise ValueError(
            f"alignment table lacks columns {sorted(missing)} (have {list(alignment)})"
        )
    frame = alignment[alignment["model"].isin(list(models))].copy()
    if "display_name" in frame.columns:  # the metrics stage's readable method names
        frame["method"] = frame["display_name"].fillna(frame["method"])
    frame["family"] = [models[m].get("family", m) for m in frame["model"]]
    frame["variant"] = ["instruct" if models[m].get("instruct") else "base" for m in frame["model"]]
    long = frame.melt(
        id_vars=[c for c in ("family", "variant", "method", "dataset") if c in frame.columns],
        value_vars=["example_f1", "nll"],
        var_name="metric",
        value_name="value",
    )
    group = ["family", "variant", "method", "metric"]
    out = long.groupby(group, sort=True).agg(
        value=("value", "mean"),
        n_datasets=("dataset", "nunique") if "dataset" in long.columns else ("value", "size"),
    )
    return out.reset_index()


def select_rows(frame: pd.DataFrame, **allowed: Sequence) -> pd.DataFrame:
    """Rows whose ``column`` value is in ``allowed[column]``, for each column the frame has
    (a figure reads only its study's cells of a table that holds other studies' rows too)."""
    keep = pd.Series(True, index=frame.index)
    for column, values in allowed.items():
        if column in frame.columns:
            keep &= frame[column].isin(list(values))
    return frame[keep]


def tag(frame: pd.DataFrame, **keys) -> pd.DataFrame:
    """Prepend constant columns (dataset, model, prompt, …) so per-run CSVs can be stacked."""
    out = frame.copy()
    for pos, (name, value) in enumerate(keys.items()):
        out.insert(pos, name, value)
    return out


def label_order_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 7: pool the per-run ``label_order_agreement`` rows by label-order setting.

    ``rows`` needs ``label_order, n, n_alphabetical, n_prompt, prompt_is_alphabetical``
    (stacked over models, datasets and seeds). Percentages are over the pooled multi-label
    outputs; the prompt column is NaN for settings where prompt order is alphabetical.
    """
    need = {"label_order", "n", "n_alphabetical", "n_prompt", "prompt_is_alphabetical"}
    if need - set(rows.columns):
        raise ValueError(f"label-order rows lack {sorted(need - set(rows.columns))}")
    out = []
    for setting, group in rows.groupby("label_order", sort=False):
        n = int(group["n"].sum())
        distinct = group[~group["prompt_is_alphabetical"].astype(bool)]
        n_distinct = int(distinct["n"].sum())
        out.append(
            {
                "setting": setting,
                "n_runs": len(group),
                "n": n,
                "pct_alphabetical": 100.0 * group["n_alphabetical"].sum() / n if n else math.nan,
                "pct_prompt": (
                    100.0 * distinct["n_prompt"].sum() / n_distinct if n_distinct else math.nan
                ),
            }
        )
    return pd.DataFrame(out, columns=["setting", "n_runs", "n", "pct_alphabetical", "pct_prompt"])


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


COVERAGE_COLUMNS = [
    "analysis",
    "n_outputs",
    "n_used",
    "n_dropped",
    "n_dropped_unparsed",
    "n_dropped_no_label_step",
    "n_dropped_fewer_than_two_labels",
    "n_repeat_steps",
    "n_unnamed_steps",
    "n_went_on_outside",
    "n_cut_off_last",
]


def coverage(
    traces: Sequence[Trace],
    labels: Sequence[str],
    require_parse: bool = True,
    label_format: str | None = None,
) -> pd.DataFrame:
    """How many outputs each per-run analysis uses and why it drops the others.

    One row per analysis of :data:`TRACE_ANALYSES` (``coverage`` itself aside): ``n_outputs``
    (traces in the file), ``n_used``, ``n_dropped`` and its reasons: ``unparsed`` (output does
    not parse; the per-step analyses drop them only when ``require_parse``, Fig 5 and Table 7
    always), ``no_label_step`` (no counted label step), ``fewer_than_two_labels`` (Fig 5,
    Table 7 and Fig 11 need a multi-label output). The file-level counts of label steps left out
    of every per-step analysis (``n_repeat_steps``, ``n_unnamed_steps``) and of outputs whose
    last counted step is intermediate because an item outside the label set (or a cut-off
    item) follows (``n_went_on_outside``), and of outputs cut off right after their last
    counted step (``n_cut_off_last``: position ``cut_off``) repeat on each row. ``example_steps`` uses one output; its
    ``n_used`` is the number it chose from.
    """
    n = len(traces)
    per_trace = [(t, counted_steps(t, labels, label_format)) for t in traces]
    n_unparsed = sum(not t.parse_ok for t in traces)
    stepped = [(t, c) for t, c in per_trace if c.steps and (t.parse_ok or not require_parse)]
    no_step = sum(not c.steps and (t.parse_ok or not require_parse) for t, c in per_trace)
    no_step_parsed = sum(not c.steps and t.parse_ok for t, c in per_trace)
    unparsed_steps = n_unparsed if require_parse else 0
    multi_steps = sum(len(c.steps) > 1 for _, c in stepped)
    parsed_labels = [len(output_labels(t)) for t in traces if t.parse_ok]
    multi_parsed = sum(k > 1 for k in parsed_labels)
    file_level = {
        "n_repeat_steps": sum(c.n_repeats for _, c in per_trace),
        "n_unnamed_steps": sum(c.n_unnamed for _, c in per_trace),
        "n_went_on_outside": sum(c.went_on for _, c in per_trace),
        "n_cut_off_last": sum(c.open_end for _, c in per_trace),
    }
    steps_row = (len(stepped), unparsed_steps, no_step, 0)
    # analysis -> (used, dropped unparsed, dropped without label step, dropped single-label)
    usage = {
        "step_stats": steps_row,
        "second_next": steps_row,
        "second_never": steps_row,
        "second_position": (multi_steps, unparsed_steps, no_step, len(stepped) - multi_steps),
        "first_step_sorted": steps_row,
        "label_position_accuracy": (multi_parsed, n_unparsed, 0, len(parsed_labels) - multi_parsed),
        "multilabel_rate": (n, 0, 0, 0),
        "label_order": (multi_parsed, n_unparsed, 0, len(parsed_labels) - multi_parsed),
        "example_steps": (sum(t.parse_ok for t, _ in stepped), n_unparsed, no_step_parsed, 0),
    }
    rows = [
        {
            "analysis": name,
            "n_outputs": n,
            "n_used": used,
            "n_dropped": n - used,
            "n_dropped_unparsed": unparsed,
            "n_dropped_no_label_step": none,
            "n_dropped_fewer_than_two_labels": single,
            **file_level,
        }
        for name, (used, unparsed, none, single) in usage.items()
    ]
    return pd.DataFrame(rows, columns=COVERAGE_COLUMNS)


TRACE_ANALYSES = (
    "step_stats",
    "second_next",
    "second_never",
    "second_position",
    "first_step_sorted",
    "label_position_accuracy",
    "multilabel_rate",
    "label_order",
    "example_steps",
    "coverage",
)


def trace_analyses(
    traces: Sequence[Trace],
    labels: Sequence[str],
    gold: dict[str, Iterable[str]],
    prompt_order: Sequence[str] | None = None,
    require_parse: bool = True,
    human: dict[str, dict[str, float]] | None = None,
    label_format: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Every per-run analysis of one trace file, keyed by ``TRACE_ANALYSES`` names.

    ``label_format`` is the prompt's (``TraceMeta.info["label_format"]``); see
    :func:`counted_steps`.
    """
    traces = list(traces)
    steps = step_statistics(traces, labels, require_parse, label_format)
    return {
        "step_stats": steps,
        "second_next": second_predicted_next(steps),
        "second_never": second_never_predicted(steps),
        "second_position": second_eventual_position(steps, from_step=1),
        "first_step_sorted": first_step_sorted(
            traces, labels, require_parse=require_parse, label_format=label_format
        ),
        "label_position_accuracy": label_position_accuracy(traces, gold),
        "multilabel_rate": multilabel_output_rate(traces, labels),
        "label_order": label_order_agreement(traces, labels, prompt_order),
        "example_steps": example_steps(traces, labels, human or {}, label_format),
        "coverage": coverage(traces, labels, require_parse, label_format),
    }
