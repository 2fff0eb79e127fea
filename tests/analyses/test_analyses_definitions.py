"""The step definitions of docs/analyses.md on hand-built traces: which label steps count
(fallback, repeats, items outside the label set), the impossible cases kept out of the
"second predicted next" denominators, and how many outputs each analysis drops."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from multilabel_llm.analyses import mechanisms as an
from multilabel_llm.analyses import run_tables
from multilabel_llm.core.traces import LabelStep, Trace
from multilabel_llm.data import label_steps

LABELS = ["admiration", "joy", "sadness"]  # + none: 4 probabilities per step
FLAT = [0.25, 0.25, 0.25, 0.25]  # a formatting-token step no analysis may read


def trace(tid, text, pred, steps, probs, **extra) -> Trace:
    """``steps``: (generated step, label); ``probs``: {generated step: P row}, FLAT elsewhere."""
    n = max([s for s, _ in steps] + list(probs) + [0]) + 2
    rows = [list(probs.get(k, FLAT)) for k in range(n)]
    return Trace(
        id=tid,
        text_out=text,
        pred_labels=pred,
        label_steps=[LabelStep(s, lab) for s, lab in steps],
        step_logits=[[0.0] * 4 for _ in range(n)],
        step_probs=rows,
        extra=extra,
    )


def one(frame: pd.DataFrame, tid: str, step: int) -> pd.Series:
    hit = frame[(frame["id"] == tid) & (frame["step"] == step)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


# a cut-off output that does not parse: the engine's fallback put admiration at the "ad" token
# inside "sadness" (as under the Llama 3 tokenizer: "s|ad|ness)
CUT = trace(
    "cut",
    '{"label": ["sadness',
    None,
    [(4, "sadness"), (5, "admiration")],
    {4: [0.1, 0.1, 0.7, 0.1], 5: [0.6, 0.1, 0.2, 0.1]},
    unparseable=True,
)


def test_fallback_steps_keep_only_labels_the_text_names():
    counted = label_steps.counted_steps(CUT, LABELS)
    assert counted.labels == ["sadness"] and counted.n_unnamed == 1
    assert label_steps.named_labels(CUT, LABELS) == {"sadness"}
    # Fig 6 no longer calls it multi-label (it did: sadness + admiration)
    assert an.n_output_labels(CUT, LABELS) == 1
    assert an.output_labels(CUT, LABELS) == ["sadness"]
    rate = an.multilabel_output_rate([CUT], LABELS).iloc[0]
    assert (rate["n_multilabel"], rate["n_unparsed"]) == (0, 1)
    # with unparsed outputs let in, its one step is the last one, read at generated step 4
    steps = an.step_statistics([CUT], LABELS, require_parse=False)
    assert len(steps) == 1
    row = one(steps, "cut", 1)
    assert (row["position"], row["pred_label"], row["top_prob"]) == ("last", "sadness", 0.7)
    assert an.step_statistics([CUT], LABELS).empty  # require_parse drops it
    with pytest.raises(ValueError, match="'cut' does not parse"):
        an.output_labels(CUT)


def test_fallback_text_naming_two_labels_stays_multilabel():
    free = trace(
        "free",
        "I feel joy and sadness",
        None,
        [(2, "joy"), (4, "sadness")],
        {2: [0.1, 0.6, 0.2, 0.1], 4: [0.1, 0.2, 0.6, 0.1]},
    )
    assert label_steps.counted_steps(free, LABELS).labels == ["joy", "sadness"]
    assert an.n_output_labels(free, LABELS) == 2


def test_a_labels_first_occurrence_only_counts():
    twice = trace(
        "twice",
        '{"label": ["sadness", "sadness"]}',
        ["sadness"],
        [(4, "sadness"), (8, "sadness")],
        {4: [0.1, 0.2, 0.6, 0.1], 8: [0.05, 0.05, 0.8, 0.1]},
    )
    counted = label_steps.counted_steps(twice, LABELS)
    assert counted.labels == ["sadness"] and counted.n_repeats == 1
    steps = an.step_statistics([twice], LABELS)
    assert len(steps) == 1
    row = one(steps, "twice", 1)
    # last (a repeat is not going on), read at the first occurrence
    assert (row["position"], row["n_steps"], row["top_prob"]) == ("last", 1, 0.6)

    back = trace(
        "back",
        '{"label": ["joy", "sadness", "joy"]}',
        ["joy", "sadness"],
        [(4, "joy"), (7, "sadness"), (10, "joy")],
        {4: [0.1, 0.6, 0.2, 0.1], 7: [0.1, 0.1, 0.7, 0.1], 10: [0.1, 0.8, 0.05, 0.05]},
    )
    steps = an.step_statistics([back], LABELS)
    assert steps["position"].tolist() == ["intermediate", "last"]
    assert steps["pred_label"].tolist() == ["joy", "sadness"]


def test_an_item_outside_the_label_set_means_the_model_went_on():
    # parse_output keeps "happy" as unknown; sadness is not the last thing the model listed
    went = trace(
        "went",
        '{"label": ["sadness", "happy"]}',
        ["sadness"],
        [(4, "sadness")],
        {4: [0.1, 0.3, 0.5, 0.1]},
        unknown_labels=["happy"],
    )
    counted = label_steps.counted_steps(went, LABELS, "json")
    assert counted.went_on and counted.labels == ["sadness"]
    row = one(an.step_statistics([went], LABELS, label_format="json"), "went", 1)
    assert row["position"] == "intermediate" and bool(row["next_outside"])
    assert row["next_label"] is None and math.isnan(row["next_pred_prob"])
    assert pd.isna(row["second_is_next"])
    # an outside item before the last label changes nothing: joy -> sadness, sadness last
    middle = trace(
        "middle",
        "joy, happy, sadness",
        ["joy", "sadness"],
        [(0, "joy"), (5, "sadness")],
        {0: [0.1, 0.6, 0.2, 0.1], 5: [0.1, 0.1, 0.7, 0.1]},
    )
    steps = an.step_statistics([middle], LABELS, label_format="comma")
    assert steps["position"].tolist() == ["intermediate", "last"]
    assert steps["next_outside"].tolist() == [False, False]
    assert not label_steps.counted_steps(middle, LABELS, "comma").went_on
    # ... and one after it (comma format) makes sadness intermediate
    after = trace(
        "after",
        "joy, sadness, Happy",
        ["joy", "sadness"],
        [(0, "joy"), (2, "sadness")],
        {0: [0.1, 0.6, 0.2, 0.1], 2: [0.1, 0.1, 0.7, 0.1]},
    )
    steps = an.step_statistics([after], LABELS, label_format="comma")
    assert steps["position"].tolist() == ["intermediate", "intermediate"]
    assert steps["next_outside"].tolist() == [False, True]
    # the format is read from the text when the trace file does not say
    assert label_steps.counted_steps(went, LABELS).went_on


def denominator_traces() -> list[Trace]:
    """Intermediate steps: p1 (second joy, predicted next), p2 (second sadness, generated at
    r=1: impossible), q1 (second admiration, not next, never later), n1 (second none:
    impossible), g1 (second joy, generated at r itself: impossible), o1 (an outside item
    follows: no r+1)."""
    return [
        trace(
            "p",
            '{"label": ["sadness", "joy", "admiration"]}',
            ["sadness", "joy", "admiration"],
            [(1, "sadness"), (3, "joy"), (5, "admiration")],
            {1: [0.1, 0.3, 0.5, 0.1], 3: [0.15, 0.6, 0.2, 0.05], 5: [0.7, 0.1, 0.1, 0.1]},
        ),
        trace(
            "q",
            '{"label": ["sadness", "joy"]}',
            ["sadness", "joy"],
            [(1, "sadness"), (3, "joy")],
            {1: [0.3, 0.1, 0.5, 0.1], 3: [0.1, 0.7, 0.1, 0.1]},
        ),
        trace(
            "n",
            '{"label": ["sadness", "joy"]}',
            ["sadness", "joy"],
            [(1, "sadness"), (3, "joy")],
            {1: [0.05, 0.1, 0.6, 0.25], 3: [0.1, 0.7, 0.1, 0.1]},
        ),
        trace(
            "g",
            '{"label": ["joy", "sadness"]}',
            ["joy", "sadness"],
            [(1, "joy"), (3, "sadness")],
            # the model starts joy although sadness is on top: second-highest = joy itself
            {1: [0.05, 0.3, 0.6, 0.05], 3: [0.1, 0.1, 0.7, 0.1]},
        ),
        trace(
            "o",
            '{"label": ["joy", "happy"]}',
            ["joy"],
            [(1, "joy")],
            {1: [0.3, 0.6, 0.05, 0.05]},
        ),
    ]


def test_impossible_cases_are_counted_apart():
    steps = an.step_statistics(denominator_traces(), LABELS, label_format="json")
    assert one(steps, "p", 1)["second_case"] == "candidate"
    assert one(steps, "n", 1)["second_case"] == "none"
    assert one(steps, "g", 1)["second_case"] == "generated"
    assert one(steps, "q", 1)["second_case"] == "candidate"  # admiration, not generated yet

    assert one(steps, "p", 2)[["second_label", "second_case"]].tolist() == ["sadness", "generated"]
    nxt = an.second_predicted_next(steps).set_index("step")
    # possible: p1 (joy next: hit) and q1 (admiration; joy next: miss)
    assert nxt.loc["all"].to_dict() == {
        "n": 2,
        "n_second_next": 1,
        "pct_second_next": 50.0,
        "n_next_outside": 1,
        "n_second_none": 1,
        "n_second_generated": 2,
    }
    assert nxt.loc["2", "n"] == 0 and nxt.loc["2", "n_second_generated"] == 1
    assert math.isnan(nxt.loc["2", "pct_second_next"])

    table4 = an.second_never_predicted(steps).iloc[0].to_dict()
    # of the possible steps only q1 misses, and admiration never comes: 1 of 1
    assert table4 == {
        "n": 1,
        "n_never": 1,
        "pct_never": 100.0,
        "n_next_outside": 1,
        "n_second_none": 1,
        "n_second_generated": 2,
    }
    hist = an.second_eventual_position(steps).set_index("position")["count"].to_dict()
    assert hist == {"2": 1, "never": 1, "second_none": 1, "second_generated": 1}


def test_coverage_counts_what_each_analysis_drops():
    traces = [
        *denominator_traces(),
        CUT,
        trace("empty", "no idea", None, [], {}),
        trace("none", '{"label": ["none"]}', [], [(1, "none")], {1: [0.1, 0.1, 0.1, 0.7]}),
        trace(
            "rep",
            '{"label": ["joy", "joy"]}',
            ["joy"],
            [(1, "joy"), (3, "joy")],
            {1: [0.1, 0.6, 0.2, 0.1], 3: [0.1, 0.6, 0.2, 0.1]},
        ),
    ]
    cov = run_tables.coverage(traces, LABELS, label_format="json").set_index("analysis")
    assert list(cov.index) == [a for a in run_tables.TRACE_ANALYSES if a != "coverage"]
    assert (cov["n_outputs"] == 9).all()
    steps = cov.loc["step_stats"]
    # 7 parsed outputs with a counted step used; CUT and "empty" do not parse
    assert (steps["n_used"], steps["n_dropped_unparsed"], steps["n_dropped_no_label_step"]) == (
        7,
        2,
        0,
    )
    # Fig 11 needs a step after the first: p, q, n, g
    assert cov.loc["second_position", "n_used"] == 4
    assert cov.loc["second_position", "n_dropped_fewer_than_two_labels"] == 3
    # Fig 5 / Table 7: parsed outputs with two or more labels (p, q, n, g)
    fig5 = cov.loc["label_position_accuracy"]
    assert (fig5["n_used"], fig5["n_dropped_unparsed"]) == (4, 2)
    assert fig5["n_dropped_fewer_than_two_labels"] == 3  # o, none, rep
    assert cov.loc["multilabel_rate", "n_used"] == 9
    assert (steps["n_repeat_steps"], steps["n_unnamed_steps"], steps["n_went_on_outside"]) == (
        1,
        1,
        1,
    )
    lenient = run_tables.coverage(traces, LABELS, require_parse=False, label_format="json")
    lenient = lenient.set_index("analysis").loc["step_stats"]
    assert (lenient["n_used"], lenient["n_dropped_no_label_step"]) == (8, 1)  # "empty" has none


def test_trace_analyses_writes_coverage_and_uses_counted_steps():
    traces = [*denominator_traces(), CUT]
    gold = {t.id: ["joy"] for t in traces}
    tables = run_tables.trace_analyses(traces, LABELS, gold, label_format="json")
    assert set(tables) == set(run_tables.TRACE_ANALYSES)
    assert tables["coverage"].set_index("analysis").loc["step_stats", "n_used"] == 5
    assert tables["second_never"].iloc[0]["n_next_outside"] == 1
    # the example of Fig 1 is chosen among counted steps: p has three distinct labels
    assert tables["example_steps"]["id"].unique().tolist() == ["p"]


def test_a_list_cut_off_by_the_budget():
    probs = {4: [0.1, 0.2, 0.6, 0.1], 7: [0.1, 0.6, 0.2, 0.1]}
    # cut right after a whole label: joy may or may not have been the last label
    open_end = trace(
        "open",
        '{"label": ["sadness", "joy',
        ["sadness", "joy"],
        [(4, "sadness"), (7, "joy")],
        probs,
    )
    counted = label_steps.counted_steps(open_end, LABELS, "json")
    assert counted.open_end and not counted.went_on
    steps = an.step_statistics([open_end], LABELS, label_format="json")
    assert steps["position"].tolist() == ["intermediate", "cut_off"]
    # cut inside the next item: the model had gone on after sadness
    fragment = trace("frag", '{"label": ["sadness", "jo', ["sadness"], [(4, "sadness")], probs)
    row = one(an.step_statistics([fragment], LABELS, label_format="json"), "frag", 1)
    assert row["position"] == "intermediate" and bool(row["next_outside"])
    # neither counts as a last step nor in the second-next denominators
    both = an.step_statistics([open_end, fragment], LABELS, label_format="json")
    assert not (both["position"] == "last").any()
    nxt = an.second_predicted_next(both).set_index("step").loc["all"]
    assert (nxt["n"], nxt["n_next_outside"]) == (1, 1)
    cov = run_tables.coverage([open_end, fragment], LABELS, label_format="json").iloc[0]
    assert (cov["n_cut_off_last"], cov["n_went_on_outside"]) == (1, 1)
