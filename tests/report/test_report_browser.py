"""End to end: the analysis, figure and report rules on hand-built traces, then the HTML report
opened in a real headless Chromium, checking that every figure and table renders.

The rules run under a throwaway Snakefile that stands in for the lead's Snakefile/common.smk
(a config and its grid, multilabel_llm.workflow.dag.WorkflowDag) and includes the real rule files.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from multilabel_llm.data.canonical import CanonicalDataset, save_canonical
from tests._browser import By, click_text, headless_chromium, open_every_entry

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "traces"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
LABELS = ["anger", "joy", "sadness"]
GOLD = {"a": ["joy", "sadness"], "b": ["sadness"], "c": ["anger"], "d": ["joy", "anger"], "e": []}

CONFIG = {
    "experiment_name": "browser-test",
    "datasets": {
        "toyemo": {
            "name": "toyemo",
            # the probe study's sets must be defined (its probe scores are prewritten below)
            "testsets": {"multilabel": {}, "probe_train": {"size": 4}, "probe_eval": {"size": 4}},
        }
    },
    "models": {
        "toy-base": {"family": "toy", "instruct": False},
        "toy-instruct": {"family": "toy", "instruct": True},
    },
    "prompts": {
        "half": {
            "name": "half",
            "multilabel_ratio": 0.5,
            "label_order": "alphabetical",
            "hidden_states": True,
        },
        "all-reverse": {"name": "all-reverse", "multilabel_ratio": 1.0, "label_order": "reverse"},
    },
    "methods": {
        "max_over_generations": {"kind": "max_over_generations", "applies_to": ["multilabel"]},
        "hard_predictions": {"kind": "hard_predictions"},
    },
    "analyses": {"max_step": 2},  # config/analyses/default.yaml
    # which runs each table and figure reads (multilabel_llm.workflow.studies)
    "studies": {
        "mechanisms": {"prompts": ["half"], "testsets": ["multilabel"]},
        "label_order": {},
        "icl_ratio": {},
        "probes": {"prompts": ["half"]},
        "attention": {"models": ["toy-instruct"], "prompts": ["half"]},
        "base_vs_instruct": {"prompts": ["half"]},
    },
}

SNAKEFILE = f"""
import json
from multilabel_llm.workflow.dag import WorkflowDag
from multilabel_llm.workflow.studies import resolve_studies

config.update(json.load(open("config.json")))
dag = WorkflowDag(config, resolve_studies(config))
RESULTS = dag.results

wildcard_constraints:
    dataset="|".join(dag.datasets),
    prompt="|".join(dag.prompts),
    model="[^/]+",
    testset="[^/]+",

report: "{ROOT}/workflow/report/workflow.rst"

include: "{ROOT}/rules/analyses.smk"
include: "{ROOT}/rules/figures.smk"
include: "{ROOT}/rules/report.smk"

rule all:
    input:
        # the figures and table pages (alignment_toyemo.csv is prewritten below)
        [f"results/figures/{{name}}.png" for name in dag.figure_names()],
        [f"results/report/tables/{{name}}.html" for name in dag.report_table_names()],
"""


def build_workspace(work: Path) -> None:
    """Inputs the upstream stages would make: dataset, traces, attention, probes, tables."""
    (work / "config.json").write_text(json.dumps(CONFIG))
    (work / "Snakefile").write_text(SNAKEFILE)
    results = work / "results"
    examples = pd.DataFrame(
        {
            "id": list(GOLD),
            "split": "dev",
            "text": [f"text {i}" for i in GOLD],
            "labels": [GOLD[i] for i in GOLD],
            "annotators": [["r1"]] * len(GOLD),
            "annotator_labels": [[GOLD[i]] for i in GOLD],
            "n_annotators": 1,
            **{f"h_{lab}": [float(lab in GOLD[i]) for i in GOLD] for lab in LABELS},
        }
    )
    save_canonical(CanonicalDataset("toyemo", LABELS, True, examples), results / "data/toyemo")
    for model in CONFIG["models"]:
        for prompt in CONFIG["prompts"]:
            run = results / f"traces/toyemo/{model}/{prompt}/multilabel"
            run.mkdir(parents=True)
            with open(FIXTURES / "toy.jsonl", "rb") as src:
                with gzip.open(run / "traces.jsonl.gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
            probes = results / f"probes/toyemo/{model}/{prompt}"
            probes.mkdir(parents=True)
            pd.DataFrame(
                {
                    "variant": ["Gold", "Pred", "Pred 2+", "Perf"],
                    "micro_f1": [0.6, 0.8, 0.3, 0.5],
                    "n": 5,
                    "n_train": 20,
                }
            ).to_csv(probes / "probe_scores.csv", index=False)
    pd.DataFrame(
        {
            "id": ["a", "a", "d"],
            "step": [1, 2, 1],
            "input_mass": [0.8, 0.7, 0.75],
            "input_count": [300, 300, 280],
            "label_mass": [0.2, 0.3, 0.25],
            "label_count": [12, 14, 12],
            "first_mass": [0.05, 0.08, 0.06],
            "first_count": [1, 2, 1],
        }
    ).to_csv(results / "traces/toyemo/toy-instruct/half/multilabel/attention.csv", index=False)
    tables = results / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame(
        {
            "method": ["max_over_generations", "hard_predictions"] * 2,
            "model": ["toy-base", "toy-base", "toy-instruct", "toy-instruct"],
            "prompt": "half",
            "nll": [3.0, 20.0, 4.0, 24.0],
            "l1": [1.2, 1.3, 1.1, 1.4],
            "example_f1": [0.35, 0.3, 0.4, 0.38],
        }
    ).to_csv(tables / "alignment_toyemo.csv", index=False)
    pd.DataFrame(
        {
            "dataset": ["toyemo"],
            "annotators": ["1 (1.00)"],
            "kappa": [float("nan")],
            "0 labels": ["20%"],
            "1 label": ["40%"],
            "2 labels": ["40%"],
            "3+ labels": ["0%"],
        }
    ).to_csv(tables / "table1_datasets.csv", index=False)


@pytest.fixture(scope="module")
def built_report(tmp_path_factory):
    work = tmp_path_factory.mktemp("report_dag")
    build_workspace(work)
    proc = subprocess.run(
        [
            str(SNAKEMAKE),
            "-c2",
            "--report",
            "results/report.html",
            "--report-after-run",
            "--quiet",
            "rules",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return work


@pytest.mark.slow
def test_dag_writes_analyses_tables_and_figures(built_report):
    results = built_report / "results"
    run = results / "analyses/toyemo/toy-instruct/half/multilabel"
    second = pd.read_csv(run / "second_next.csv").set_index("step")
    assert second.loc["all", "pct_second_next"] == pytest.approx(60.0)
    assert list(second.columns[:4]) == ["dataset", "model", "prompt", "testset"]
    table4 = pd.read_csv(results / "tables/table4_second_never.csv")
    assert set(table4["model"]) == {"toy-base", "toy-instruct"}
    assert table4["pct_never"].tolist() == pytest.approx([50.0, 50.0])
    table7 = pd.read_csv(results / "tables/table7_label_order.csv").set_index("setting")
    assert table7.loc["alphabetical", "pct_alphabetical"] == pytest.approx(100 / 3)
    assert pd.isna(table7.loc["alphabetical", "pct_prompt"])
    assert table7.loc["reverse", "pct_prompt"] == 0.0
    rates = pd.read_csv(run.parent.parent / "all-reverse/multilabel/multilabel_rate.csv")
    assert rates.loc[0, "multilabel_ratio"] == 1.0
    table6 = pd.read_csv(results / "tables/table6_attention.csv")
    assert table6.loc[0, "n"] == 3 and table6.loc[0, "model"] == "toy-instruct"
    for name in ("fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig9", "fig10", "fig11", "fig12"):
        for ext in ("png", "pdf"):
            assert (results / f"figures/{name}.{ext}").stat().st_size > 5000, name
    assert not (results / "figures/fig13.png").exists()  # no Qwen model configured
    html = (results / "report.html").read_text()
    assert "data:image/png;base64" in html or "data:image/png;charset" in html


@pytest.mark.slow
def test_report_renders_in_headless_chromium(built_report):
    report = built_report / "results/report.html"
    with headless_chromium() as driver:
        entries = open_every_entry(driver, report)
        categories = {category for category, _, _ in entries}
        assert {"Mechanisms (§4, §D)", "Alignment (§5, §D)", "Tables"} <= categories
        assert sum(path.endswith(".png") for _, _, path in entries) == 11  # Figs 1-7, 9-12
        assert sum(path.endswith(".html") for _, _, path in entries) == 6
        # the caption of a figure reaches the report (result info panel)
        driver.get(report.as_uri())
        time.sleep(0.5)
        click_text(driver, "Mechanisms (§4, §D)")
        click_text(driver, "Per-step probabilities")
        row = driver.find_element(
            By.XPATH, "//tr[td[starts-with(normalize-space(text()), 'Figure 2:')]]"
        )
        row.find_elements(By.TAG_NAME, "a")[1].click()  # the "info" button
        time.sleep(0.5)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Top label probability at each generation step" in body
        assert "toy-instruct (Instruct)" in body and "SFT" in body
