"""One trace file's analysis tables: every per-run analysis (:data:`TRACE_ANALYSES`), the
coverage of each, and the key columns that let per-run tables be stacked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from multilabel_llm.analyses.mechanisms import (
    example_steps,
    first_step_sorted,
    label_order_agreement,
    label_position_accuracy,
    multilabel_output_rate,
    output_labels,
    second_eventual_position,
    second_never_predicted,
    second_predicted_next,
    step_statistics,
)
from multilabel_llm.core.traces import Trace
from multilabel_llm.data.label_steps import counted_steps


def tag(frame: pd.DataFrame, **keys) -> pd.DataFrame:
    """Prepend constant columns (dataset, model, prompt, …) so per-run CSVs can be stacked."""
    out = frame.copy()
    for pos, (name, value) in enumerate(keys.items()):
        out.insert(pos, name, value)
    return out


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
