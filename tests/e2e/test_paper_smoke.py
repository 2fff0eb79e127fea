"""The paper experiment, executed: `paper_smoke` is `paper` with every model slot swapped for a
CPU stand-in (random-weight Llama/Qwen/Mistral checkpoints with their family's real tokenizer,
taught the answer format for a few seconds) and real-format fixtures for all six datasets.

Same studies, roles, prompts and methods as `paper`; the whole DAG runs (not `-n`), and every
table (1, 2, 4, 5, 6, 7) and figure (1-16) of the paper must come out with a row or series for
each model and dataset the paper has.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from multilabel_llm.workflow.config import load_config
from multilabel_llm.workflow.studies import resolve_studies
from tests._dag import run_snakemake, scratch_workdir

EXPERIMENT = "paper_smoke"

pytestmark = pytest.mark.slow


def snakemake(work: Path, *args: str, timeout: int = 2400):
    return run_snakemake(work, *args, timeout=timeout)


@pytest.fixture(scope="module")
def smoke():
    cfg = load_config({"experiment": EXPERIMENT})
    return cfg, resolve_studies(cfg)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    # dataset configs name repo-relative files
    work = scratch_workdir(tmp_path_factory.mktemp("paper_smoke"), "data", "tests")
    proc = snakemake(work, "--cores", "2", "--config", f"experiment={EXPERIMENT}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work


def test_smoke_is_the_paper_experiment_with_stand_ins(smoke):
    cfg, studies = smoke
    paper = load_config({"experiment": "paper"})
    paper_studies = resolve_studies(paper)
    assert list(studies) == list(paper_studies)
    for name, study in studies.items():
        twin = paper_studies[name]
        assert (study.models, study.datasets, study.prompts, study.testsets, study.methods) == (
            twin.models,
            twin.datasets,
            twin.prompts,
            twin.testsets,
            twin.methods,
        ), name
    assert cfg["roles"] == paper["roles"]
    assert cfg["prompts"] == paper["prompts"]
    for slot, model in cfg["models"].items():
        real = paper["models"][slot]
        assert model.get("standin"), slot
        assert (model["family"], model["instruct"]) == (real["family"], real["instruct"]), slot
    # one stand-in per slot: families, sizes and base/instruct roles stay distinct
    assert len({m["name"] for m in cfg["models"].values()}) == len(cfg["models"])


def test_every_paper_table_has_a_row_per_model_and_dataset(finished, smoke):
    cfg, studies = smoke
    tables = finished / "results/paper_smoke/tables"
    table1 = pd.read_csv(tables / "table1_datasets.csv")
    assert len(table1) == 6
    for name in ("table2", "table5"):
        table = pd.read_csv(tables / f"{name}.csv")
        assert not table.empty, name
        text = (tables / f"{name}.md").read_text()
        for dataset in ("hatexplain", "msp_podcast", "goemotions", "mfrc"):
            display = cfg["datasets"][dataset].get("display_name", dataset)
            assert display in text or dataset in text, (name, dataset)
    table4 = pd.read_csv(tables / "table4_second_never.csv")
    mech = studies["mechanisms"]
    assert set(table4["dataset"]) == set(mech.datasets)
    assert set(table4["model"]) == set(mech.models)
    table6 = pd.read_csv(tables / "table6_attention.csv")
    assert set(table6["model"]) == set(studies["attention"].models)
    assert set(table6["dataset"]) == set(studies["attention"].datasets)
    table7 = pd.read_csv(tables / "table7_label_order.csv")
    assert {"alphabetical", "random", "reverse"} <= set(table7["setting"])
    comparison = pd.read_csv(tables / "paper_comparison.csv")
    paper_tables = {f"Table {n}" for n in (1, 2, 4, 5, 6, 7)}
    assert paper_tables <= set(comparison["table"])
    assert (comparison["status"] == "compared").sum() > 50


def test_every_paper_figure_is_drawn(finished):
    for number in range(1, 17):
        for ext in ("png", "pdf"):
            path = finished / f"results/paper_smoke/figures/fig{number}.{ext}"
            assert path.stat().st_size > 5000, path.name


def test_mechanism_figures_have_data_for_every_model(finished, smoke):
    """Stand-ins answer in the prompt's format, so the per-step analyses are not empty."""
    _, studies = smoke
    mech = studies["mechanisms"]
    rows = 0
    for cell in mech.trace_runs():
        path = finished / (
            f"results/paper_smoke/analyses/{cell['dataset']}/{cell['model']}/{cell['prompt']}/"
            f"{cell['testset']}/step_stats.csv"
        )
        assert path.is_file(), path
        rows += len(pd.read_csv(path))
    assert rows > 0


def test_rerun_has_nothing_to_do(finished):
    proc = snakemake(finished, "-n", "--config", f"experiment={EXPERIMENT}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr
