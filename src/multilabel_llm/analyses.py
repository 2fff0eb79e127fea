"""The mechanism analyses of paper §4 and §D as pure functions of traces.

Every function takes a list of :class:`~multilabel_llm.traces.Trace` (plus the label list, the
gold labels or a small table where needed) and returns a :class:`pandas.DataFrame`, so each
analysis is one CSV and can be tested on hand-built traces. Definitions (also in
docs/analyses.md):

* generation step ``r`` (1-based): the r-th entry of ``Trace.label_steps``, i.e. the generated
  step at which the r-th label of the output starts. Its distribution ``P_r`` is the trace's
  ``step_probs`` row at that step: a softmax over the first-token logits of ``labels + ["none"]``
  (paper §3, §A.1), so *none* is one of the candidates for top and second-highest.
* *last*: the step that starts the final label of the output (``r == R``, ``R`` = number of
  label steps); *intermediate*: every earlier label step (the model goes on to emit a label).
* top / second-highest: the largest and second-largest entries of ``P_r`` (ties: the label
  that comes first in ``labels + ["none"]`` order wins).
* predicted label at ``r``: ``label_steps[r-1].label`` (what the model actually started).
* ``r+1 pred``: ``P_r`` of the label predicted at ``r+1`` (intermediate steps only).
* ``intermediate@r+1``: ``P_{r+1}`` of the second-highest label at ``r`` (intermediate only).
* *second predicted next*: the second-highest label at ``r`` is the label predicted at ``r+1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from . import NONE_LABEL
from .traces import Trace

LAST = "last"
INTERMEDIATE = "intermediate"

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
    "next_pred_prob",
    "second_prob_next",
    "second_is_next",
    "second_later_step",
]


def _check_row(trace: Trace, row: Sequence[float], n_scores: int, step: int) -> np.ndarray:
    probs = np.asarray(row, dtype=float)
    if probs.shape != (n_scores,):
        raise ValueError(
            f"trace {trace.id!r}: step_probs[{step}] has {probs.size} entries, expected "
            f"{n_scores} (the labels + 'none')"
        )
    return probs


def label_step_distributions(trace: Trace, n_scores: int) -> np.ndarray:
    """``(R, n_scores)`` probabilities at the trace's label steps, validated."""
    rows = []
    for label_step in trace.label_steps:
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


def _usable(traces: Iterable[Trace], require_parse: bool) -> list[Trace]:
    return [t for t in traces if t.label_steps and (t.parse_ok or not require_parse)]


def step_statistics(
    traces: Iterable[Trace], labels: Sequence[str], require_parse: bool = True
) -> pd.DataFrame:
    """One row per (trace, label step): the quantities behind Figs 2, 3, 9, 10 and Table 4.

    ``second_later_step`` is the first step after ``r`` at which the second-highest label of
    ``r`` is predicted (NaN if never). Traces without label steps, and unparseable ones when
    ``require_parse``, contribute nothing.
    """
    score_labels = [*labels, NONE_LABEL]
    index = {lab: k for k, lab in enumerate(score_labels)}
    rows = []
    for trace in _usable(traces, require_parse):
        dists = label_step_distributions(trace, len(score_labels))
        step_labels = [s.label for s in trace.label_steps]
        for lab in step_labels:
            if lab not in index:
                raise ValueError(
                    f"trace {trace.id!r}: label step label {lab!r} is not one of {score_labels}"
                )
        n_steps = len(step_labels)
        for r in range(n_steps):
            probs = dists[r]
            top, second = _top_two(probs)
            second_label = score_labels[second] if second >= 0 else None
            is_last = r == n_steps - 1
            row = {
                "id": trace.id,
                "step": r + 1,
                "n_steps": n_steps,
                "position": LAST if is_last else INTERMEDIATE,
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
                "next_pred_prob": math.nan,
                "second_prob_next": math.nan,
                "second_is_next": None,
                "second_later_step": math.nan,
            }
            if not is_last:
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
    return frame.astype({"second_is_next": "boolean"})


def second_predicted_next(step_stats: pd.DataFrame) -> pd.DataFrame:
    """% of intermediate steps ``r`` whose second-highest label is predicted at ``r+1``.

    One row per step plus an ``all`` row: ``step, n, n_second_next, pct_second_next``.
    """
    inter = step_stats[step_stats["position"] == INTERMEDIATE]
    inter = inter[inter["second_is_next"].notna()]
    rows = []
    groups = [(str(int(s)), g) for s, g in inter.groupby("step", sort=True)] + [("all", inter)]
    for step, group in groups:
        n = len(group)
        hits = int(group["second_is_next"].astype(bool).sum())
        rows.append(
            {
                "step": step,
                "n": n,
                "n_second_next": hits,
                "pct_second_next": 100.0 * hits / n if n else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["step", "n", "n_second_next", "pct_second_next"])


def second_never_predicted(step_stats: pd.DataFrame) -> pd.DataFrame:
    """Table 4: among intermediate steps whose second-highest label is NOT predicted at ``r+1``,
    the % where it is never predicted at any later step.

    Columns ``n`` (such steps), ``n_never``, ``pct_never``; one row.
    """
    inter = step_stats[step_stats["position"] == INTERMEDIATE]
    inter = inter[inter["second_is_next"].notna()]
    missed = inter[~inter["second_is_next"].astype(bool)]
    n = len(missed)
    never = int(missed["second_later_step"].isna().sum())
    return pd.DataFrame(
        [{"n": n, "n_never": never, "pct_never": 100.0 * never / n if n else math.nan}]
    )


def second_eventual_position(step_stats: pd.DataFrame, from_step: int = 1) -> pd.DataFrame:
    """Fig 11: where the second-highest label of step ``from_step`` is eventually predicted.

    Only outputs with more than ``from_step`` label steps count (multi-label generations).
    Rows: ``position`` (the later step, ``from_step+1`` …, or ``never``), ``count`` and
    ``pct_of_predicted`` (share among the cases where it is predicted at all, the histogram the
    paper shows; NaN on the ``never`` row).
    """
    source = step_stats[
        (step_stats["step"] == from_step) & (step_stats["position"] == INTERMEDIATE)
    ]
    later = source["second_later_step"]
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
    rows.append(
        {
            "from_step": from_step,
            "position": "never",
            "count": int(later.isna().sum()),
            "pct_of_predicted": math.nan,
        }
    )
    return pd.DataFrame(rows, columns=["from_step", "position", "count", "pct_of_predicted"])


def first_step_sorted(
    traces: Iterable[Trace],
    labels: Sequence[str],
    include_none: bool = False,
    require_parse: bool = True,
) -> pd.DataFrame:
    """Fig 4: the label probabilities at the first label step, sorted decreasingly.

    Long format ``id, rank, prob`` (rank 1 = top). As in the reference plot, *none* is left
    out by default and the remaining probabilities are shown as they are (not renormalised).
    """
    n_scores = len(labels) + 1
    rows = []
    for trace in _usable(traces, require_parse):
        probs = label_step_distributions(trace, n_scores)[0]
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


def output_labels(trace: Trace) -> list[str]:
    """The labels of an output in generation order, without repeats and without *none*.

    Parsed labels when the output parses, else the labels at the label steps.
    """
    source = trace.pred_labels if trace.parse_ok else [s.label for s in trace.label_steps]
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


def n_output_labels(trace: Trace) -> int:
    """Distinct labels an output carries: the larger of its parsed labels and label steps.

    The reference counts ``max(len(all_scores), len(preds))``; repeats and *none* are dropped
    here so that ``["joy", "joy"]`` is not multi-label.
    """
    parsed = _ordered_unique(trace.pred_labels or [])
    stepped = _ordered_unique(s.label for s in trace.label_steps)
    return max(
        len([x for x in parsed if x != NONE_LABEL]), len([x for x in stepped if x != NONE_LABEL])
    )


def multilabel_output_rate(traces: Iterable[Trace]) -> pd.DataFrame:
    """Fig 6 (one point): share of outputs with more than one label.

    Counts every trace (unparseable ones count as not multi-label unless their label steps
    show several labels). Columns ``n, n_multilabel, pct_multilabel, n_unparsed``.
    """
    traces = list(traces)
    n = len(traces)
    multi = sum(n_output_labels(t) > 1 for t in traces)
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
    region in input / label / first_token (or ``first``). ``min_step`` optionally keeps rows
    with ``step >= min_step`` only (the engine already leaves out the first label). Per token
    attention = mass / count, averaged over rows, in % (``pct_per_token_<region>``, the
    paper's numbers); ``share_<region>`` is the mean mass in %, the cumulative split the paper
    quotes (~80/20).
    """
    frame = attention
    if min_step is not None:
        if "step" not in attention.columns:
            raise ValueError(f"attention table has no 'step' column (columns: {list(attention)})")
        frame = attention[attention["step"] >= min_step]
    out: dict[str, float] = {"n": len(frame)}
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
    traces: Sequence[Trace], labels: Sequence[str], human: dict[str, dict[str, float]]
) -> pd.DataFrame:
    """Fig 1: one example's label distribution at every label step, next to the human one.

    The example is the parsed output with the most distinct labels (then the most label steps,
    then the smallest id), so the figure shows the step-by-step drift the paper opens with. Columns ``id, text_out,
    step`` ("label 1", "label 2", …, "human"), ``label``, ``prob`` and ``generated`` (the
    label the model generated at that step). Empty when no output has a label step.
    """
    columns = ["id", "text_out", "step", "label", "prob", "generated"]
    usable = [t for t in _usable(traces, True) if t.label_steps]
    if not usable:
        return pd.DataFrame(columns=columns)
    trace = min(
        usable,
        key=lambda t: (-len({s.label for s in t.label_steps}), -len(t.label_steps), t.id),
    )
    score_labels = [*labels, NONE_LABEL]
    rows = []
    dists = label_step_distributions(trace, len(score_labels))
    for k, (step, row) in enumerate(zip(trace.label_steps, dists, strict=True), start=1):
        for label, prob in zip(score_labels, row, strict=True):
            rows.append(
                (trace.id, trace.text_out, f"label {k}", label, float(prob), label == step.label)
            )
    for label in labels:
        rows.append(
            (trace.id, trace.text_out, "human", label, human.get(trace.id, {}).get(label), False)
        )
    return pd.DataFrame(rows, columns=columns)


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
)


def trace_analyses(
    traces: Sequence[Trace],
    labels: Sequence[str],
    gold: dict[str, Iterable[str]],
    prompt_order: Sequence[str] | None = None,
    require_parse: bool = True,
    human: dict[str, dict[str, float]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every per-run analysis of one trace file, keyed by ``TRACE_ANALYSES`` names."""
    steps = step_statistics(traces, labels, require_parse=require_parse)
    return {
        "step_stats": steps,
        "second_next": second_predicted_next(steps),
        "second_never": second_never_predicted(steps),
        "second_position": second_eventual_position(steps, from_step=1),
        "first_step_sorted": first_step_sorted(traces, labels, require_parse=require_parse),
        "label_position_accuracy": label_position_accuracy(traces, gold),
        "multilabel_rate": multilabel_output_rate(traces),
        "label_order": label_order_agreement(traces, labels, prompt_order),
        "example_steps": example_steps(traces, labels, human or {}),
    }
