"""The §4/§D analyses on hand-built traces whose answers were worked out by hand
(tests/fixtures/traces/README.md)."""

from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multilabel_llm.analyses import mechanisms as an
from multilabel_llm.analyses import summaries
from multilabel_llm.core.traces import LabelStep, Trace, read_traces

FIXTURES = Path(__file__).parents[1] / "fixtures" / "traces"
GOLD = {"a": ["joy", "sadness"], "b": ["sadness"], "c": ["anger"], "d": ["joy", "anger"], "e": []}


def gz_fixture(tmp_path: Path, name: str = "toy") -> Path:
    out = tmp_path / "traces.jsonl.gz"
    with open(FIXTURES / f"{name}.jsonl", "rb") as src, gzip.open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


@pytest.fixture
def toy(tmp_path):
    meta, traces = read_traces(gz_fixture(tmp_path))
    return meta, traces


@pytest.fixture
def steps(toy):
    meta, traces = toy
    return an.step_statistics(traces, meta.labels)


def row(frame, trace_id, step):
    hit = frame[(frame["id"] == trace_id) & (frame["step"] == step)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_step_statistics_per_step_values(steps):
    # e has no label step; a, b, c, d contribute 3 + 2 + 1 + 3 steps
    assert len(steps) == 9
    assert set(steps["id"]) == {"a", "b", "c", "d"}
    a1 = row(steps, "a", 1)
    assert (a1["position"], a1["top_label"], a1["second_label"]) == ("intermediate", "joy", "anger")
    assert a1["top_prob"] == pytest.approx(0.7)
    assert a1["second_prob"] == pytest.approx(0.2)
    assert a1["next_pred_prob"] == pytest.approx(0.2)  # r+1 pred: P_1(anger)
    assert a1["second_prob_next"] == pytest.approx(0.6)  # intermediate@r+1: P_2(anger)
    assert bool(a1["second_is_next"])
    b1 = row(steps, "b", 1)
    assert b1["next_pred_prob"] == pytest.approx(0.03)
    assert b1["second_prob_next"] == pytest.approx(0.03)
    assert not bool(b1["second_is_next"]) and math.isnan(b1["second_later_step"])
    assert row(steps, "d", 1)["second_later_step"] == 3
    # the label-step rows of a sit at generated steps 1, 3, 5: junk rows must be skipped
    assert row(steps, "a", 3)["top_prob"] == pytest.approx(0.9)


def test_last_steps_and_ties(steps):
    last = steps[steps["position"] == "last"].set_index("id")
    assert sorted(last.index) == ["a", "b", "c", "d"]
    assert last["top_prob"].to_dict() == pytest.approx({"a": 0.9, "b": 0.85, "c": 0.95, "d": 0.8})
    # none is a candidate for second-highest; ties go to the earlier label
    assert last["second_label"].to_dict() == {"a": "none", "b": "none", "c": "joy", "d": "joy"}
    assert last["next_label"].isna().all() and last["second_is_next"].isna().all()


def test_entropy_bits(steps):
    expected = -sum(p * math.log2(p) for p in [0.95, 0.02, 0.02, 0.01])
    assert row(steps, "c", 1)["entropy_bits"] == pytest.approx(expected)
    assert an.entropy_bits(np.array([0.5, 0.5, 0.0])) == pytest.approx(1.0)


def test_second_predicted_next_two_of_three(toy):
    meta, traces = toy
    sub = an.step_statistics([t for t in traces if t.id in {"a", "b"}], meta.labels)
    table = an.second_predicted_next(sub).set_index("step")
    assert table.loc["all", "n"] == 3 and table.loc["all", "n_second_next"] == 2
    assert table.loc["all", "pct_second_next"] == pytest.approx(66.6667, abs=1e-3)


def test_second_predicted_next_per_step(steps):
    table = an.second_predicted_next(steps).set_index("step")
    assert table.loc["1", "pct_second_next"] == pytest.approx(100 / 3)
    assert table.loc["2", "pct_second_next"] == pytest.approx(100.0)
    assert table.loc["all", "pct_second_next"] == pytest.approx(60.0)


def test_table4_second_never_predicted(steps):
    table = an.second_never_predicted(steps).iloc[0]
    assert (table["n"], table["n_never"]) == (2, 1)
    assert table["pct_never"] == pytest.approx(50.0)


def test_fig11_eventual_position(steps):
    hist = an.second_eventual_position(steps, from_step=1).set_index("position")
    assert hist["count"].to_dict() == {
        "2": 1,
        "3": 1,
        "never": 1,
        "second_none": 0,
        "second_generated": 0,
    }
    assert hist.loc["2", "pct_of_predicted"] == pytest.approx(50.0)
    assert math.isnan(hist.loc["never", "pct_of_predicted"])


def test_fig4_first_step_sorted(toy):
    meta, traces = toy
    frame = an.first_step_sorted(traces, meta.labels)
    d = frame[frame["id"] == "d"].sort_values("rank")["prob"].tolist()
    assert d == pytest.approx([0.5, 0.3, 0.15])  # none left out
    with_none = an.first_step_sorted(traces, meta.labels, include_none=True)
    assert with_none.groupby("id").size().to_dict() == {"a": 4, "b": 4, "c": 4, "d": 4}


def test_fig5_label_position_accuracy(toy):
    _, traces = toy
    acc = an.label_position_accuracy(traces, GOLD).set_index("position")
    assert acc["n"].to_dict() == {1: 3, 2: 3, 3: 2}
    assert acc["accuracy"].to_dict() == pytest.approx({1: 2 / 3, 2: 1 / 3, 3: 1.0})
    assert list(an.label_position_accuracy(traces, GOLD, max_position=2)["position"]) == [1, 2]
    with pytest.raises(ValueError, match="'a' has no gold"):
        an.label_position_accuracy(traces, {"b": ["joy"]})


def test_fig6_multilabel_rate(toy):
    _, traces = toy
    rate = an.multilabel_output_rate(traces, ["anger", "joy", "sadness"]).iloc[0]
    assert (rate["n"], rate["n_multilabel"], rate["n_unparsed"]) == (5, 3, 1)
    assert rate["pct_multilabel"] == pytest.approx(60.0)


def test_repeated_label_is_not_multilabel():
    trace = Trace(
        id="x",
        text_out="joy, joy",
        pred_labels=["joy", "joy"],
        label_steps=[LabelStep(0, "joy"), LabelStep(1, "joy")],
        step_logits=[[0, 0, 0]] * 2,
        step_probs=[[0.1, 0.8, 0.1]] * 2,
    )
    assert an.n_output_labels(trace, ["joy", "sadness"]) == 1


def test_table7_label_order(toy):
    meta, traces = toy
    alpha = an.label_order_agreement(traces, meta.labels).iloc[0]
    assert alpha["n"] == 3 and alpha["pct_alphabetical"] == pytest.approx(100 / 3)
    assert bool(alpha["prompt_is_alphabetical"]) and math.isnan(alpha["pct_prompt"])
    custom = an.label_order_agreement(traces, meta.labels, ["joy", "sadness", "anger"]).iloc[0]
    assert custom["pct_prompt"] == pytest.approx(200 / 3)
    reverse = an.label_order_agreement(traces, meta.labels, ["sadness", "joy", "anger"]).iloc[0]
    assert reverse["pct_prompt"] == 0.0
    with pytest.raises(ValueError, match="not a permutation"):
        an.label_order_agreement(traces, meta.labels, ["joy", "anger"])


def test_table6_attention_summary():
    # the engine's columns: first_* for the labels' first tokens, rows only for labels 2+
    attention = pd.DataFrame(
        {
            "id": ["a", "a", "b"],
            "step": [1, 2, 1],
            "input_mass": [0.9, 0.8, 0.6],
            "input_count": [100, 100, 200],
            "label_mass": [0.1, 0.2, 0.4],
            "label_count": [5, 10, 10],
            "first_mass": [0.05, 0.1, 0.0],
            "first_count": [1, 2, 0],
        }
    )
    out = summaries.attention_summary(attention).iloc[0]
    assert out["n"] == 3
    assert out["pct_per_token_input"] == pytest.approx(
        (0.9 / 100 + 0.8 / 100 + 0.6 / 200) / 3 * 100
    )
    assert out["pct_per_token_label"] == pytest.approx((0.02 + 0.02 + 0.04) / 3 * 100)
    # a row whose region is empty (count 0) does not count for that region
    assert out["pct_per_token_first_token"] == pytest.approx(5.0)
    assert out["share_input"] == pytest.approx(230 / 3)
    # the engine's step is the 0-based label-step index; the summary counts r = step + 1
    assert (out["from_step"], out["to_step"]) == (2, 3)
    later = summaries.attention_summary(attention, min_step=3).iloc[0]
    assert later["n"] == 1 and later["pct_per_token_input"] == pytest.approx(0.8)
    assert summaries.attention_summary(attention, min_step=2).iloc[0]["n"] == 3
    with pytest.raises(ValueError, match="input_mass"):
        summaries.attention_summary(pd.DataFrame({"step": [2], "x": [1]}))


def test_bad_trace_rows_are_named():
    trace = Trace(
        id="bad",
        text_out="joy",
        pred_labels=["joy"],
        label_steps=[LabelStep(3, "joy")],
        step_logits=[[0, 0, 0]],
        step_probs=[[0.1, 0.8, 0.1]],
    )
    with pytest.raises(ValueError, match="'bad'.*outside step_probs"):
        an.step_statistics([trace], ["anger", "joy"])
    trace.label_steps = [LabelStep(0, "joy")]
    with pytest.raises(ValueError, match="expected 4"):
        an.step_statistics([trace], ["anger", "joy", "sadness"])


def test_probe_summary_names_and_order():
    scores = pd.DataFrame(
        {"variant": ["perf", "pred_2plus", "gold", "pred"], "micro_f1": [0.5, 0.2, 0.6, 0.8]}
    )
    out = summaries.probe_summary(scores)
    assert list(out["variant"]) == ["Gold", "Pred", "Pred 2+", "Perf"]
    with pytest.raises(ValueError, match="micro_f1"):
        summaries.probe_summary(pd.DataFrame({"variant": ["gold"]}))


def test_base_vs_instruct_averages_over_datasets():
    alignment = pd.DataFrame(
        {
            "dataset": ["g", "m", "g", "m"],
            "method": ["max"] * 4,
            "model": ["base", "base", "chat", "chat"],
            "nll": [2.0, 4.0, 5.0, 7.0],
            "example_f1": [0.2, 0.4, 0.5, 0.7],
        }
    )
    models = {"base": {"family": "llama", "instruct": False}, "chat": {"family": "llama"}}
    models["chat"]["instruct"] = True
    out = summaries.base_vs_instruct(alignment, models).set_index(["variant", "metric"])["value"]
    assert out[("base", "nll")] == pytest.approx(3.0)
    assert out[("instruct", "example_f1")] == pytest.approx(0.6)


def test_fig1_example_steps_picks_the_output_with_most_distinct_labels(toy):
    meta, traces = toy
    human = {"a": {"joy": 1.0, "sadness": 0.5}}
    frame = an.example_steps(traces, meta.labels, human)
    # a and d both have three label steps; a is chosen on the id tie-break
    chosen = frame["id"].unique().tolist()
    assert chosen == ["a"]
    steps = frame[frame["step"] != "human"]
    assert steps["step"].unique().tolist() == ["label 1", "label 2", "label 3"]
    # each step's distribution sums to one and marks exactly the generated label
    for _, cell in steps.groupby("step"):
        assert cell["prob"].sum() == pytest.approx(1.0)
        assert cell["generated"].sum() == 1
    first = steps[steps["step"] == "label 1"].set_index("label")
    assert first.loc["joy", "prob"] == pytest.approx(0.7) and first.loc["joy", "generated"]
    human_rows = frame[frame["step"] == "human"].set_index("label")["prob"]
    assert human_rows["joy"] == 1.0 and human_rows["sadness"] == 0.5
    assert an.example_steps([], meta.labels, {}).empty


def test_select_rows_keeps_only_the_studys_cells():
    frame = pd.DataFrame({"model": ["a", "b", "a"], "prompt": ["p", "p", "q"], "x": [1, 2, 3]})
    out = summaries.select_rows(frame, model=["a"], prompt=["p"], testset=["t"])
    assert out["x"].tolist() == [1]  # a filter on a column the table lacks is ignored
