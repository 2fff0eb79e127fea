"""The paper's numbers (data/paper_reference/) and the cell-by-cell comparison with a run."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from multilabel_llm.report import paper_comparison as pc
from multilabel_llm.report import paper_comparison_render as render
from multilabel_llm.report import paper_reference as pr
from multilabel_llm.scoring.tables import DatasetColumn, MethodInfo, paper_table


@pytest.fixture(scope="module")
def ref():
    return pr.load_reference()


def cell(ref, table, row, column, metric):
    hit = ref[
        (ref["table"] == table)
        & (ref["row"] == row)
        & (ref["column"] == column)
        & (ref["metric"] == metric)
    ]
    assert len(hit) == 1, (table, row, column, metric, len(hit))
    return hit.iloc[0]


# ---------------------------------------------------------------------------- reference


def test_reference_loads_every_table(ref):
    counts = ref.groupby("key").size().to_dict()
    # Tables 2/5: 9 methods x 4 datasets x 3 metrics; Table 4: 4 x 6; Table 6: 2 x 4 x 3
    assert counts == {
        "table1": 21,
        "table2": 108,
        "table4": 24,
        "table5": 108,
        "table6": 24,
        "table7": 6,
        "text_values": len(ref[ref["key"] == "text_values"]),
    }
    assert counts["text_values"] >= 10
    assert set(ref["status"]) <= set(pr.STATUS_MARKERS)
    assert not ref.duplicated(["table", "row", "column", "metric"]).any()
    # a number exactly where the paper prints one
    assert ref.loc[ref["status"] == "reported", "paper"].notna().all()
    assert ref.loc[ref["status"] != "reported", "paper"].isna().all()


@pytest.mark.parametrize(
    ("table", "row", "column", "metric", "value", "bold"),
    [
        ("Table 2", "Unary Breakdown", "Hatexplain", "NLL", "0.91", True),
        ("Table 2", "Compare-to-None", "GoEmotions", "NLL", "23.93", False),
        ("Table 2", "Max-Over-Generations", "MFRC", "NLL", "2.32", True),
        ("Table 2", "SFT Outputs", "MFRC", "NLL", "10.45", False),
        ("Table 2", "Linear Probing", "GoEmotions", "NLL", "2.42", True),
        ("Table 2", "Linear Probing", "MFRC", "F1", "0.81", False),
        ("Table 5", "Hard Predictions", "MFRC", "NLL", "40.79", False),
        ("Table 5", "Compare-to-None", "Hatexplain", "NLL", "0.97", True),
        ("Table 5", "Linear Probing", "MFRC", "F1", "0.83", True),
        ("Table 5", "SFT Max-Over-Generations", "GoEmotions", "NLL", "4.15", False),
        ("Table 4", "MFRC", "8B Base", "%", "100", False),
        ("Table 4", "Boxes", "70B Instruct", "%", "56.8", False),
        ("Table 6", "8B Base", "Boxes", "1st Tokens", "3.06", False),
        ("Table 6", "8B Instruct", "SemEval", "Input", "0.163", False),
        ("Table 7", "Reverse", "Prompt", "%", "71.9", False),
        ("Table 7", "Random", "Alphabetical", "%", "35.2", False),
        ("Table 1", "GoEmotions", "Annotators", "per example", "3.58", False),
    ],
)
def test_spot_checks_against_the_paper_text(ref, table, row, column, metric, value, bold):
    hit = cell(ref, table, row, column, metric)
    assert hit["value"] == value
    assert hit["status"] == "reported"
    assert hit["paper"] == pytest.approx(float(value))
    assert bool(hit["bold"]) is bold


@pytest.mark.parametrize(
    ("table", "row", "column", "metric", "marker", "status"),
    [
        ("Table 2", "Max-Over-Generations", "Hatexplain", "NLL", "N/A", "not_applicable"),
        ("Table 5", "SFT Max-Over-Generations", "MSPPodcast", "F1", "N/A", "not_applicable"),
        ("Table 2", "SFT Outputs", "MSPPodcast", "L1", "N/S", "not_supplied"),
        ("Table 4", "Boxes", "8B SFT", "%", "-", "not_reported"),
        ("Table 7", "Alphabetical", "Prompt", "%", "-", "not_applicable"),
        ("Table 1", "MFRC", "3+ labels", "%", "<1", "upper_bound"),
        ("Table 1", "SemEval", "Cohen's Kappa", "kappa", "-", "not_reported"),
    ],
)
def test_markers_stay_markers(ref, table, row, column, metric, marker, status):
    hit = cell(ref, table, row, column, metric)
    assert (hit["value"], hit["status"]) == (marker, status)
    assert math.isnan(hit["paper"])


@pytest.mark.parametrize("table", ["Table 2", "Table 5"])
def test_linear_probing_row_is_realigned(ref, table):
    """The source row has 5 N/S then 6 numbers: N/S on both single-label datasets, numbers on
    GoEmotions and MFRC (an F1 of 2.42 on MSPPodcast would be impossible)."""
    rows = ref[(ref["table"] == table) & (ref["row"] == "Linear Probing")]
    single = rows[rows["column"].isin(["Hatexplain", "MSPPodcast"])]
    multi = rows[rows["column"].isin(["GoEmotions", "MFRC"])]
    assert (single["status"] == "not_supplied").all() and len(single) == 6
    assert (multi["status"] == "reported").all() and len(multi) == 6
    f1 = ref[(ref["table"] == table) & (ref["metric"] == "F1")]["paper"].dropna()
    assert (f1 <= 1).all()


def test_text_states_the_minimum_of_table4(ref):
    """§D.3 'at least 78.4% … 56.8%' is the lowest value of each Table 4 row."""
    text = ref[(ref["key"] == "text_values") & (ref["section"] == "§D.3")]
    table4 = ref[ref["key"] == "table4"].groupby("row")["paper"].min()
    assert len(text) == 4
    for rec in text.to_dict("records"):
        assert rec["paper"] == pytest.approx(table4[rec["row"]])


# ---------------------------------------------------------------------------- comparison

METHODS = [
    MethodInfo("compare_to_none", "Compare-to-None", "baseline", 10),
    MethodInfo("compare_to_none_platt", "Compare-to-None (Platt)", "baseline", 11),
    MethodInfo("unary_breakdown", "Unary Breakdown", "test_time", 30),
    MethodInfo("max_over_generations", "Max-Over-Generations", "test_time", 50, ("multilabel",)),
    MethodInfo("probes", "Linear Probing", "supervised", 75),
]
DATASETS = [
    DatasetColumn("goemotions", "goemotions", True),
    DatasetColumn("hatexplain", "hatexplain", False),
    DatasetColumn("semeval", "semeval", True),
]
DATASET_CFG = {
    "goemotions": {"name": "goemotions_demo"},
    "hatexplain": {"name": "hatexplain_demo"},
    "semeval": {"name": "semeval"},
}


def scores(dataset, method, nll, nll_ci, l1=0.5, f1=0.5):
    row = {
        "dataset": dataset,
        "model": "smollm2",
        "prompt": "json10",
        "testset": "main_test_set",
        "method": method,
        "nll": nll,
        "nll_ci_low": nll_ci[0],
        "nll_ci_high": nll_ci[1],
    }
    for metric, value in (("l1", l1), ("example_f1", f1)):
        row.update({metric: value, f"{metric}_ci_low": value, f"{metric}_ci_high": value})
    return row


@pytest.fixture
def table2_csv(tmp_path):
    """A table2.csv exactly as rules/metrics.smk writes it (scoring.tables.paper_table)."""
    alignment = pd.DataFrame(
        [
            scores("goemotions", "compare_to_none", 23.0, (22.0, 24.0)),  # paper 23.93: in
            scores("goemotions", "unary_breakdown", 4.0, (3.7, 4.3)),  # paper 3.60: out
            scores("goemotions", "compare_to_none_platt", 5.0, (4.0, 6.0)),  # no paper row
            scores("hatexplain", "unary_breakdown", 0.95, (0.912, 0.99)),  # 0.91 ± 0.005: in
            scores("hatexplain", "compare_to_none", 1.8, (1.67, 1.9)),  # 1.66 ± 0.005: out
            scores("hatexplain", "probes", 2.0, (1.9, 2.1)),  # paper N/S
            scores("semeval", "compare_to_none", 9.0, (8.0, 10.0)),  # not in Table 2
        ]
    )
    table = paper_table(alignment, DATASETS, METHODS, "smollm2")
    path = tmp_path / "table2.csv"
    table.to_csv(path, index=False)
    return path


def compare2(path, **kw):
    return pc.compare_table(
        "table2",
        pc.read_produced(path),
        datasets=DATASET_CFG,
        models={"smollm2": {"hf_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}},
        roles={"table2": {"model": "smollm2"}},
        **kw,
    )


def get(cells, row, column, metric):
    hit = cells[(cells["row"] == row) & (cells["column"] == column) & (cells["metric"] == metric)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_synthetic_table2_diff_and_in_ci(table2_csv):
    result = compare2(table2_csv)
    cells = result.cells
    assert list(cells.columns) == pr.COMPARISON_COLUMNS
    assert len(cells) == 108  # every cell of the paper's Table 2, produced or not

    c = get(cells, "Compare-to-None", "GoEmotions", "NLL")
    assert c["status"] == "compared"
    assert c["ours"] == pytest.approx(23.0) and c["paper"] == pytest.approx(23.93)
    assert c["diff"] == pytest.approx(23.0 - 23.93)
    assert (c["ci_low"], c["ci_high"]) == (22.0, 24.0)
    assert bool(c["paper_in_ci"]) is True

    c = get(cells, "Unary Breakdown", "GoEmotions", "NLL")
    assert c["diff"] == pytest.approx(0.4)
    assert bool(c["paper_in_ci"]) is False

    # the printed 0.91 stands for [0.905, 0.915]: it overlaps [0.912, 0.99]
    c = get(cells, "Unary Breakdown", "Hatexplain", "NLL")
    assert bool(c["paper_in_ci"]) is True and c["diff"] == pytest.approx(0.04)
    # 1.66 stands for [1.655, 1.665]: outside [1.67, 1.9]; its edge still counts
    assert bool(get(cells, "Compare-to-None", "Hatexplain", "NLL")["paper_in_ci"]) is False
    assert pc.paper_in_interval(1.66, "1.66", 1.665, 1.9) is True
    assert pc.paper_in_interval(1.66, "1.66", 1.6651, 1.9) is False
    assert pc.paper_in_interval(100.0, "100", 100.4, 101) is True

    assert "smollm2" in result.ours_label and "not the paper's model" in result.ours_label
    joined = " ".join(result.unmatched)
    assert "Compare-to-None (Platt)" in joined
    assert "semeval" in joined


def test_missing_cells_are_not_run(table2_csv):
    cells = compare2(table2_csv).cells
    # a method the run did not configure, and a dataset it did not run
    for row, column in [("BERT", "GoEmotions"), ("Compare-to-None", "MSPPodcast")]:
        c = get(cells, row, column, "NLL")
        assert c["status"] == "not run"
        assert math.isnan(c["ours"]) and math.isnan(c["diff"]) and pd.isna(c["paper_in_ci"])
        assert not math.isnan(c["paper"])
    # a table the experiment does not produce: every reported cell is "not run"
    result = pc.compare_tables({"table2": table2_csv}, datasets=DATASET_CFG)
    table5 = result.cells[result.cells["table"] == "Table 5"]
    assert len(table5) == 108
    assert set(table5["status"]) == {"not run", "paper N/A", "paper N/S"}
    assert set(result.cells["table"]) == {f"Table {k}" for k in (1, 2, 4, 5, 6, 7)}


def test_na_cells_never_compare_as_numbers(table2_csv):
    cells = compare2(table2_csv).cells
    # paper N/A and our table's own N/A (max-over-generations on a single-label dataset)
    c = get(cells, "Max-Over-Generations", "Hatexplain", "NLL")
    assert c["status"] == "paper N/A" and c["paper_text"] == "N/A"
    assert math.isnan(c["paper"]) and math.isnan(c["diff"]) and pd.isna(c["paper_in_ci"])
    # we produced a number where the paper did not supply one: shown, not compared
    c = get(cells, "Linear Probing", "Hatexplain", "NLL")
    assert c["status"] == "paper N/S" and c["ours"] == pytest.approx(2.0)
    assert math.isnan(c["diff"]) and pd.isna(c["paper_in_ci"])
    marked = cells[cells["paper_text"].isin(["N/A", "N/S", "-"])]
    assert marked["paper"].isna().all() and marked["diff"].isna().all()
    assert marked["paper_in_ci"].isna().all()


def test_table4_and_table7_mapping():
    models = {
        "llama3-8b": {"hf_id": "meta-llama/Llama-3.1-8B"},
        "big": {"hf_id": "meta-llama/Llama-3.3-70B-Instruct"},
        "smollm2": {"hf_id": "HuggingFaceTB/SmolLM2-135M-Instruct"},
    }
    table4 = pd.DataFrame(
        [
            {"dataset": "mfrc", "model": "llama3-8b", "n": 10, "n_never": 9, "pct_never": 90.0},
            {"dataset": "mfrc", "model": "big-sft", "n": 10, "n_never": 8, "pct_never": 80.0},
            {"dataset": "mfrc", "model": "smollm2", "n": 10, "n_never": 7, "pct_never": 70.0},
        ]
    )
    table7 = pd.DataFrame(
        [
            {
                "setting": "reverse",
                "n_runs": 2,
                "n": 30,
                "pct_alphabetical": 10.0,
                "pct_prompt": 70.0,
            },
            {
                "setting": "alphabetical",
                "n_runs": 2,
                "n": 30,
                "pct_alphabetical": 90.0,
                "pct_prompt": float("nan"),
            },
            {
                "setting": "dataset",
                "n_runs": 2,
                "n": 30,
                "pct_alphabetical": 50.0,
                "pct_prompt": 40.0,
            },
        ]
    )
    result = pc.compare_tables({"table4": table4, "table7": table7}, models=models)
    t4 = next(t for t in result.tables if t.key == "table4")
    c = get(t4.cells, "MFRC", "8B Base", "%")
    assert c["diff"] == pytest.approx(90.0 - 100.0) and pd.isna(c["paper_in_ci"])
    assert get(t4.cells, "MFRC", "70B SFT", "%")["ours"] == pytest.approx(80.0)
    assert get(t4.cells, "GoEmotions", "8B Base", "%")["status"] == "not run"
    assert any("smollm2" in u for u in t4.unmatched)
    t7 = next(t for t in result.tables if t.key == "table7")
    assert get(t7.cells, "Reverse", "Prompt", "%")["diff"] == pytest.approx(70.0 - 71.9)
    assert get(t7.cells, "Alphabetical", "Prompt", "%")["status"] == "paper -"
    assert get(t7.cells, "Random", "Prompt", "%")["status"] == "not run"
    assert any("label order dataset" in u for u in t7.unmatched)


def test_outputs_render(table2_csv, tmp_path):
    result = pc.compare_tables({"table2": table2_csv}, datasets=DATASET_CFG)
    csv, md, html = tmp_path / "c.csv", tmp_path / "c.md", tmp_path / "c.html"
    render.write_comparison(result, csv, md, html)
    back = pd.read_csv(csv, keep_default_na=False)
    assert list(back.columns) == pr.COMPARISON_COLUMNS
    assert "N/A" in set(back["paper_text"])
    text = md.read_text()
    assert "## Table 2" in text and "not run vs 0.97" not in text
    assert "23.00 [22.00, 24.00] vs 23.93 ✓" in text
    assert "not run vs 2.69" in text  # BERT, Hatexplain NLL
    assert "Not produced by this experiment" in text  # Table 5
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'class="out"' in page
