"""Alignment tables: scoring distribution files, the paper layout and the three writers."""

import math

import numpy as np
import pandas as pd
import pytest

from multilabel_llm.core.distributions import distribution_frame
from multilabel_llm.core.metrics import reference_distribution
from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.methods.estimators import constant_distribution
from multilabel_llm.scoring.alignment import (
    AlignmentEntry,
    BootstrapSettings,
    MethodInfo,
    alignment_table,
    mark_untrained,
    read_results_long,
    results_long,
)
from multilabel_llm.scoring.tables import (
    DatasetColumn,
    alignment_latex,
    alignment_markdown,
    format_cell,
    paper_table,
    paper_table_from_long,
    paper_table_latex,
    paper_table_markdown,
)


def make_dataset(name, labels, multilabel, gold, human):
    rows = []
    for k, (g, h) in enumerate(zip(gold, human, strict=True)):
        row = {
            "id": f"{name}{k}",
            "split": "test",
            "text": f"text {k}",
            "labels": g,
            "annotators": ["x", "y"],
            "annotator_labels": [g, g],
            "n_annotators": 2,
        }
        row.update({f"h_{lab}": v for lab, v in zip(labels, h, strict=True)})
        rows.append(row)
    return CanonicalDataset(name, labels, multilabel, pd.DataFrame(rows))


MULTI = make_dataset(
    "m",
    ["a", "b"],
    True,
    gold=[["a"], [], ["a", "b"]],
    human=[[1.0, 0.5], [0.0, 0.0], [1.0, float("nan")]],  # last row: no annotators -> gold
)
SINGLE = make_dataset(
    "s", ["x", "y", "z"], False, gold=[["x"], ["y"]], human=[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]
)
METHODS = {
    "hard": MethodInfo("hard", "Hard Predictions", "baseline", 20),
    "maxgen": MethodInfo("maxgen", "Max-Over-Generations", "test_time", 50, ("multilabel",)),
    "const": MethodInfo("const", "Constant (0.1)", "reference", 90),
    "probes": MethodInfo("probes", "Linear Probing", "supervised", 70),
}


def test_reference_distribution_falls_back_to_gold_without_annotators():
    h, gold, n_fallback = reference_distribution(MULTI, ["m0", "m2"])
    assert n_fallback == 1
    assert h.tolist() == [[1.0, 0.5], [1.0, 1.0]]
    assert gold.tolist() == [[1, 0], [1, 1]]


@pytest.fixture()
def files(tmp_path):
    paths = {}
    ids_m = ["m0", "m1", "m2"]
    q_hard = [[0.9, 0.2], [0.1, 0.1], [0.8, 0.6]]
    paths["m/hard"] = tmp_path / "m_hard.parquet"
    distribution_frame(ids_m[::-1], ["a", "b"], q_hard[::-1]).to_parquet(
        paths["m/hard"]
    )  # order-free
    paths["m/const"] = tmp_path / "m_const.parquet"
    constant_distribution(ids_m, ["a", "b"], True, 0.1).to_parquet(paths["m/const"])
    paths["m/maxgen"] = tmp_path / "m_maxgen.parquet"
    distribution_frame(ids_m, ["a", "b"], [[0.6, 0.6], [0.3, 0.0], [0.7, 0.7]]).to_parquet(
        paths["m/maxgen"]
    )
    paths["s/hard"] = tmp_path / "s_hard.parquet"
    distribution_frame(
        ["s0", "s1"], ["x", "y", "z"], [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]]
    ).to_parquet(paths["s/hard"])
    return paths


def score(files, key, dataset, ids):
    entry = AlignmentEntry("llm", "p", "main", key.split("/")[1], str(files[key]))
    return alignment_table(
        [entry], dataset, {"main": ids}, METHODS, bootstrap=BootstrapSettings(200, 0)
    )


def test_alignment_table_values_by_hand(files):
    table = score(files, "m/hard", MULTI, ["m0", "m1", "m2"])
    row = table.iloc[0]
    # NLL per example: m0 -log .9 - (.5 log .2 + .5 log .8); m1 -log .9 - log .9; m2 -log .8 - log .6
    nll = [
        -math.log(0.9) - 0.5 * math.log(0.2) - 0.5 * math.log(0.8),
        -2 * math.log(0.9),
        -math.log(0.8) - math.log(0.6),
    ]
    assert row["nll"] == pytest.approx(np.mean(nll))
    assert row["l1"] == pytest.approx(np.mean([0.1 + 0.3, 0.2, 0.2 + 0.4]))
    # predicted sets {a}, {}, {a,b} = gold exactly
    assert row["example_f1"] == row["micro_f1"] == row["macro_f1"] == pytest.approx(1.0)
    assert row["reference"] == "mixed" and row["n_examples"] == 3
    assert row["nll_ci_low"] <= row["nll"] <= row["nll_ci_high"]
    assert row["display_name"] == "Hard Predictions"


def test_constant_baseline_has_good_l1_but_useless_f1(files):
    const = score(files, "m/const", MULTI, ["m0", "m1", "m2"]).iloc[0]
    hard = score(files, "m/hard", MULTI, ["m0", "m1", "m2"]).iloc[0]
    assert const["example_f1"] == pytest.approx(1 / 3)  # only the empty example is "right"
    assert const["micro_f1"] == 0.0
    assert const["l1"] == pytest.approx(np.mean([0.9 + 0.4, 0.2, 0.9 + 0.9]))
    assert hard["example_f1"] > const["example_f1"]


def test_single_label_scoring(files):
    row = score(files, "s/hard", SINGLE, ["s0", "s1"]).iloc[0]
    assert row["nll"] == pytest.approx(
        np.mean([-math.log(0.7), -0.5 * (math.log(0.6) + math.log(0.3))])
    )
    assert row["example_f1"] == pytest.approx(0.5)  # argmax x, x vs gold x, y


def test_missing_ids_name_the_file(files):
    entry = AlignmentEntry("llm", "p", "main", "hard", str(files["s/hard"]))
    with pytest.raises(ValueError, match="s_hard.parquet.*no distribution row"):
        alignment_table([entry], SINGLE, {"main": ["s0", "s9"]}, METHODS)


@pytest.fixture()
def combined(files):
    parts = [score(files, k, MULTI, ["m0", "m1", "m2"]) for k in ("m/hard", "m/const", "m/maxgen")]
    parts.append(score(files, "s/hard", SINGLE, ["s0", "s1"]))
    for part, name in zip(parts, ["m", "m", "m", "s"], strict=True):
        part["dataset"] = name
    return pd.concat(parts, ignore_index=True)


DATASETS = [DatasetColumn("m", "MultiSet", True), DatasetColumn("s", "SingleSet", False)]


def test_paper_table_layout(combined):
    table = paper_table(combined, DATASETS, list(METHODS.values()), "llm")
    assert table["display_name"].tolist() == [
        "Hard Predictions",
        "Max-Over-Generations",
        "Linear Probing",
        "Constant (0.1)",
    ]
    by = table.set_index("method")
    assert by.loc["maxgen", "s_status"] == "not_applicable"  # not applicable to single-label
    assert by.loc["probes", "m_status"] == "missing"  # no file (yet)
    assert by.loc["hard", "m_status"] == "ok"
    assert by.loc["hard", "m_nll"] == pytest.approx(combined.iloc[0]["nll"])
    assert math.isnan(by.loc["probes", "m_nll"])
    assert table.attrs["datasets"][0]["name"] == "s"  # single-label columns first


def test_paper_table_writers(combined):
    methods = list(METHODS.values())
    table = paper_table(combined, DATASETS, methods, "llm")
    md = paper_table_markdown(table, methods, title="Table 2")
    assert "SingleSet NLL ↓" in md and "MultiSet F1 ↑" in md
    assert "N/A" in md and "—" in md
    hard = table.set_index("method").loc["hard"]
    cell = format_cell(hard["m_l1"], hard["m_l1_ci_low"], hard["m_l1_ci_high"])
    assert cell in md
    assert "**" in md  # best values in bold
    tex = paper_table_latex(table, methods, caption="Alignment 50% of_all", label="tab:t2")
    assert r"\toprule" in tex and r"\multicolumn{3}{c}{MultiSet}" in tex
    assert r"NLL $\downarrow$" in tex and r"50\% of\_all" in tex
    assert r"\textbf{" in tex
    assert tex.count(r"\\") == 3 + len(methods)  # three header rows, one row per method


def test_alignment_writers(combined):
    md = alignment_markdown(combined)
    assert md.count("\n") == len(combined) + 2
    assert "(" in md  # max-over-generations on single-label is never in this frame; hard is
    tex = alignment_latex(combined, caption="x")
    assert r"\begin{tabular}" in tex and "Max-Over-Generations" in tex


def test_format_cell():
    assert format_cell(1.2345, 1.1, 1.4) == "1.23 [1.10, 1.40]"
    assert format_cell(float("nan"), 0, 0) == "—"


def _supervised_rows(tmp_path, files, q, note=None):
    """Alignment of the constant baseline plus a supervised "probes" row with outputs ``q``."""
    ids = ["m0", "m1", "m2"]
    frame = distribution_frame(ids, ["a", "b"], q)
    if note:
        frame["note"] = note
    frame.to_parquet(tmp_path / "probes.parquet")
    entries = [
        AlignmentEntry("llm", "p", "main", "const", str(files["m/const"])),
        AlignmentEntry("llm", "p", "main", "probes", str(tmp_path / "probes.parquet")),
    ]
    table = alignment_table(
        entries, MULTI, {"main": ids}, METHODS, bootstrap=BootstrapSettings(50, 0)
    )
    return mark_untrained(table, baseline="const")


def test_supervised_row_worse_than_constant_everywhere_is_marked(tmp_path, files):
    # predicts b where a is gold, everything where nothing is, nothing where both are
    rows = _supervised_rows(tmp_path, files, [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    by = rows.set_index("method")
    assert not by.loc["const", "untrained"]  # only supervised rows are judged
    assert by.loc["probes", "untrained"]
    const, probe = by.loc["const"], by.loc["probes"]
    assert probe["example_f1"] == 0.0 and const["example_f1"] == pytest.approx(1 / 3)
    assert by.loc["probes", "untrained_reason"] == (
        f"beats Constant (0.1) on no metric (NLL {probe['nll']:.2f} vs {const['nll']:.2f}, "
        f"L1 {probe['l1']:.2f} vs {const['l1']:.2f}, F1 0.00 vs 0.33)"
    )
    md = alignment_markdown(rows)
    assert "| Linear Probing | 3 | untrained | untrained |" in md
    assert "- Linear Probing (llm, p, main): beats Constant (0.1) on no metric" in md
    assert r"\par\smallskip" in alignment_latex(rows)


def test_supervised_row_beating_constant_on_one_metric_is_kept(tmp_path, files):
    # the hard file: its F1 of 1 beats the constant baseline's 1/3
    rows = _supervised_rows(tmp_path, files, [[0.9, 0.2], [0.1, 0.1], [0.8, 0.6]])
    assert not rows.set_index("method").loc["probes", "untrained"]
    assert "untrained" not in alignment_markdown(rows)


def test_constant_output_or_training_note_marks_the_row(tmp_path, files):
    same = _supervised_rows(tmp_path, files, [[0.5, 0.5]] * 3)
    probe = same.set_index("method").loc["probes"]
    assert probe["example_f1"] > 1 / 3  # beats the constant baseline on F1 ...
    assert probe["untrained"]  # ... with one answer for every example
    assert probe["untrained_reason"] == "the same output for all 3 examples"
    noted = _supervised_rows(
        tmp_path, files, [[0.9, 0.2], [0.1, 0.1], [0.8, 0.6]], note="degenerate: x"
    )
    assert noted.set_index("method").loc["probes", "untrained_reason"] == "degenerate: x"


def test_paper_table_marks_untrained_cells_and_keeps_numbers(tmp_path, files, combined):
    rows = _supervised_rows(tmp_path, files, [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    rows["dataset"] = "m"
    alignment = pd.concat([combined, rows[rows["method"] == "probes"]], ignore_index=True)
    methods = list(METHODS.values())
    table = paper_table(alignment, DATASETS, methods, "llm", baseline="const")
    probe = table.set_index("method").loc["probes"]
    assert probe["m_status"] == "untrained"
    assert probe["m_note"].startswith("beats Constant (0.1) on no metric")
    assert probe["m_nll"] == pytest.approx(rows.set_index("method").loc["probes", "nll"])
    md = paper_table_markdown(table, methods)
    line = next(x for x in md.splitlines() if "Linear Probing" in x and x.startswith("|"))
    assert line.count("untrained") == 3 and "**" not in line
    assert "- Linear Probing on MultiSet: beats Constant (0.1) on no metric" in md
    tex = paper_table_latex(table, methods)
    assert "untrained" in tex and r"\footnotesize" in tex


def test_paper_table_from_long_table_equals_paper_table_from_alignment_csvs(
    tmp_path, files, combined
):
    """Table 2/5 as a view of results_long.csv: the same CSV, Markdown and LaTeX as from the
    wide per-dataset alignment CSVs (each read back from disk as the workflow does)."""
    from multilabel_llm.scoring.alignment import results_long_from_files

    rows = _supervised_rows(tmp_path, files, [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    rows["dataset"] = "m"
    alignment = pd.concat([combined, rows[rows["method"] == "probes"]], ignore_index=True)
    paths = []
    for name, part in alignment.groupby("dataset", sort=False):
        paths.append(tmp_path / f"alignment_{name}.csv")
        part.to_csv(paths[-1], index=False)
    long = results_long_from_files(paths, baseline="const")
    assert set(long["metric"]) == {"nll", "l1", "example_f1", "micro_f1", "macro_f1"}
    assert len(long) == 5 * len(alignment)
    long.to_csv(tmp_path / "results_long.csv", index=False)
    methods = list(METHODS.values())
    wide = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    expected = paper_table(wide, DATASETS, methods, "llm", baseline="const")
    got = paper_table_from_long(
        read_results_long(tmp_path / "results_long.csv"), DATASETS, methods, "llm"
    )
    assert got.set_index("method").loc["probes", "m_status"] == "untrained"
    assert got.attrs == expected.attrs
    assert got.to_csv(index=False) == expected.to_csv(index=False)
    assert paper_table_markdown(got, methods) == paper_table_markdown(expected, methods)
    assert paper_table_latex(got, methods, caption="c") == paper_table_latex(
        expected, methods, caption="c"
    )
    # the in-memory long table gives the same view
    in_memory = results_long(wide, baseline="const")
    assert paper_table_from_long(in_memory, DATASETS, methods, "llm").equals(got)


# ---------------------------------------------------------------------------- the DAG

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
DAG_METHODS = [
    "compare_to_none",
    "compare_to_none_platt",
    "hard_predictions",
    "unary_breakdown",
    "binary_breakdown",
    "binary_breakdown_outcomes",
    "max_over_generations",
    "sft_outputs",
    "sft_max_over_generations",
    "probes",
    "constant",
]


def write_fixture(root, name, labels, multilabel, seed):
    """A prepared dataset with main + calibration test sets, traces (base and -sft), unary and
    binary breakdown scores and a probe distribution, as the upstream stages would write."""
    import itertools as it

    from scipy.special import softmax

    from multilabel_llm.core.io import write_id_list, write_parquet
    from multilabel_llm.core.traces import LabelStep, Trace, TraceMeta, write_traces
    from multilabel_llm.data.canonical import human_distribution_from_annotations, save_canonical

    rng = np.random.default_rng(seed)
    rows = []
    for k in range(16):
        if multilabel:
            ann = [[lab for lab in labels if rng.uniform() < 0.35] for _ in range(3)]
        else:
            ann = [[labels[rng.integers(len(labels))]] for _ in range(3)]
        h = human_distribution_from_annotations(ann, labels)
        gold = [lab for lab in labels if h[lab] > 0.5] if multilabel else [max(h, key=h.get)]
        rows.append(
            {
                "id": f"{name}{k}",
                "split": "train" if k < 8 else "test",
                "text": f"t{k}",
                "labels": gold,
                "annotators": ["1", "2", "3"],
                "annotator_labels": ann,
                "n_annotators": 3,
                **{f"h_{lab}": v for lab, v in h.items()},
            }
        )
    ds = CanonicalDataset(name, labels, multilabel, pd.DataFrame(rows))
    data = root / "results" / "data" / name
    save_canonical(ds, data)
    ids = {"main": [r["id"] for r in rows[8:]], "calibration": [r["id"] for r in rows[:8]]}
    for testset, tids in ids.items():
        write_id_list(data / "testsets" / f"{testset}.txt", tids)
    score_labels = [*labels, "none"]
    for model in ("m", "m-sft"):
        for testset, tids in ids.items():
            traces = []
            for tid in tids:
                logits = rng.normal(size=(3, len(score_labels))) * 2
                order = np.argsort(-logits[1])
                pred = [score_labels[order[0]]] if score_labels[order[0]] != "none" else []
                steps = [LabelStep(1, score_labels[order[0]])]
                if multilabel and rng.uniform() < 0.5 and score_labels[order[1]] != "none" and pred:
                    pred.append(score_labels[order[1]])
                    steps.append(LabelStep(2, score_labels[order[1]]))
                traces.append(
                    Trace(tid, "", pred, steps, logits.tolist(), softmax(logits, axis=1).tolist())
                )
            path = root / "results" / "traces" / name / model / "p" / testset / "traces.jsonl.gz"
            write_traces(path, TraceMeta(labels=labels), traces)
    breakdown = root / "results" / "breakdown" / name / "m" / "main"  # no prompt: shared
    unary = [(i, lab, float(rng.uniform())) for i in ids["main"] for lab in score_labels]
    write_parquet(
        breakdown / "unary.parquet", pd.DataFrame(unary, columns=["id", "label", "p_reasonable"])
    )
    binary = [
        (i, a, b, float(rng.uniform()))
        for i in ids["main"]
        for a, b in it.combinations(score_labels, 2)
    ]
    write_parquet(
        breakdown / "binary.parquet",
        pd.DataFrame(binary, columns=["id", "label_a", "label_b", "p_a"]),
    )
    probes = rng.uniform(size=(8, len(labels)))
    if not multilabel:
        probes = probes / probes.sum(axis=1, keepdims=True)
    dist = root / "results" / "distributions" / name / "m" / "p" / "main" / "probes.parquet"
    write_parquet(dist, distribution_frame(ids["main"], labels, probes))


# A stand-in for rules/common.smk (which composes a Hydra experiment): a hand-written config and
# its grid (multilabel_llm.workflow.dag.WorkflowDag), which rules/estimators.smk and rules/metrics.smk read.
SNAKEFILE = """
import sys, yaml
sys.path.insert(0, "{repo}/src")
from multilabel_llm.workflow.dag import WorkflowDag
from multilabel_llm.workflow.studies import resolve_studies
TESTSET_NAMES = ["main", "calibration", "probe_train", "probe_eval"]
def method(name):  # the method floor is interpolated from config/config.yaml by Hydra
    text = open(f"{repo}/config/method/{{name}}.yaml").read()
    return yaml.safe_load(text.replace("${{probability_floor}}", "1.0e-8"))
config.update(dict(
    methods={{m: method(m) for m in {methods}}},
    roles={{"table2": "m"}},
    alignment=yaml.safe_load(open("{repo}/config/alignment/default.yaml")) | {{"bootstrap_n": 200}},
    datasets={{
        d: {{
            "name": d,
            "display_name": d.title(),
            "multilabel": d == "multi",
            "testsets": dict.fromkeys(TESTSET_NAMES, {{}}),
        }}
        for d in ("multi", "single")
    }},
    models={{"m": {{}}}},
    prompts={{"p": {{"hidden_states": True}}}},
    studies={{"alignment": {{"testsets": ["main"]}}}},
))
dag = WorkflowDag(config, resolve_studies(config))
RESULTS = dag.results
include: "{repo}/rules/estimators.smk"
include: "{repo}/rules/metrics.smk"
rule all:
    input:
        [t for ext in ("csv", "md", "tex") for t in dag.alignment_tables(ext)],
        [f"results/tables/table2.{{ext}}" for ext in ("csv", "md", "tex")],
"""


@pytest.mark.slow
def test_dag_scores_every_method_into_alignment_and_paper_tables(tmp_path):
    import subprocess
    import sys

    write_fixture(tmp_path, "multi", ["a", "b", "c"], True, 0)
    write_fixture(tmp_path, "single", ["x", "y", "z"], False, 1)
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(repo=REPO, methods=DAG_METHODS))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "all", "-d", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    tables = tmp_path / "results" / "tables"
    multi = pd.read_csv(tables / "alignment_multi.csv")
    assert sorted(multi["method"]) == sorted(DAG_METHODS)
    assert multi[["nll", "l1", "example_f1", "micro_f1", "macro_f1"]].notna().all().all()
    assert (multi["nll_ci_low"] <= multi["nll"]).all() and (
        multi["nll"] <= multi["nll_ci_high"]
    ).all()
    hard = multi.set_index("method").loc["hard_predictions"]
    assert hard["nll"] == pytest.approx(-math.log(1e-8) * hard["l1"], rel=1e-4)
    table2 = pd.read_csv(tables / "table2.csv").set_index("method")
    assert table2.loc["max_over_generations", "single_status"] == "not_applicable"
    # the fixture's probe numbers are noise: worse than the constant baseline everywhere
    assert table2.loc["probes", "multi_status"] == "untrained"
    assert table2.loc["probes", "multi_note"].startswith("beats Constant 0.1 (§A.6) on no metric")
    assert table2.loc["compare_to_none_platt", "multi_status"] == "ok"
    md = (tables / "table2.md").read_text()
    assert "Max-Over-Generations" in md and "N/A" in md and "[" in md
    assert "\\toprule" in (tables / "table2.tex").read_text()
    # the calibration set is never scored
    assert set(multi["testset"]) == {"main"}
