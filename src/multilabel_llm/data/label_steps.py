"""Counted label steps: which of a trace's label steps the analyses and estimators count.

A trace contract shared by the engine (attention), the methods, the probes, the analyses and
the explorer. Definitions (also in docs/analyses.md):

* counted label steps (:func:`counted_steps`): the trace's ``label_steps`` in generation order,
  keeping only labels the output names (its parsed items; for an unparsed output the labels its
  text names as whole words) and only each label's FIRST occurrence, as the paper's code did.
* *intermediate*: a step after which the model goes on: another counted step follows, or a list
  item outside the label set does (the model started another label; there is then no ``r+1``).
  *last*: the final counted step when no such item follows it. A repeat of a label already
  generated is not going on. *cut_off*: the final counted step of a list the generation
  budget cut right after it (last or not cannot be known; in neither group).

It lives beside the prompts because it reads outputs with their parser
(:func:`~multilabel_llm.data.prompts.parse_output`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
