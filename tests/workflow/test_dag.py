"""The workflow grid (multilabel_llm.workflow.dag) without Snakemake: composed from the demo
experiment."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace as W

import pytest

from multilabel_llm.workflow.dag import DagError, WorkflowDag
from multilabel_llm.workflow.dag.figures import FIGURES, Figure


@pytest.fixture(scope="module")
def dag():
    return WorkflowDag.compose({"experiment": "demo"})


def test_sft_slot_is_synthesised_with_a_per_dataset_adapter(dag):
    base = dag.models[0]
    sft = dag.model(f"{base}-sft")
    assert sft["sft_of"] == base and sft["name"].endswith("-sft")
    assert sft["adapter"] == f"results/sft/{{dataset}}/{base}/adapter"
    inputs = dag.inference_inputs(W(dataset="goemotions", model=f"{base}-sft", testset="t"))
    assert inputs["adapter"] == f"results/sft/goemotions/{base}/adapter"
    with pytest.raises(DagError, match="unknown model slot"):
        dag.model("nope")


def test_every_method_has_exactly_one_distribution_writer(dag):
    producers = ("estimate", "estimate_binary", "marginalize", "probes", "demux")
    claimed = [m for p in producers for m in dag.methods_written_by(p).split("|") if m != "NONE"]
    assert sorted(claimed) == sorted(dag.methods)


def test_targets_and_figures(dag):
    targets = dag.final_outputs()
    assert "results/tables/table1_datasets.csv" in targets
    assert "results/tables/results_long.csv" in targets
    assert set(dag.figure_names()) <= set(FIGURES)
    params = {k: v(W(figure="fig2")) if callable(v) else v for k, v in dag.figure_params().items()}
    assert params["kind"] == "fig2" and params["max_step"] == dag.config["analyses"]["max_step"]
    # family figures reuse a plot kind; the report reads the subcategory by name
    assert dag.figures["fig13"] == Figure(
        plot="fig2", source="step_stats", subcategory="Other families", content="top probabilities"
    )
    assert dag.alignment_metric() == {
        "nll_clip": dag.config["alignment"]["nll_clip"],
        "threshold": dag.config["alignment"]["threshold"],
    }


def test_the_grid_never_imports_snakemake():
    code = (
        "import sys; from multilabel_llm.workflow.dag import WorkflowDag; "
        "WorkflowDag.compose({'experiment': 'demo'}).final_outputs(); "
        "assert 'snakemake' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_every_model_bound_rule_carries_the_engine_version(dag):
    """Rules whose jobs run the inference engine take the engine version as a param, so their
    outputs rerun when the engine changes what it writes (the params trigger). SFT trains
    with peft, not the engine; an engine service writes only its address (its clients carry
    the version)."""
    import re
    from pathlib import Path

    from multilabel_llm.engine.version import ENGINE_VERSION

    rules_dir = Path(__file__).resolve().parents[2] / "rules"
    model_bound = []
    for smk in sorted(rules_dir.glob("*.smk")):
        for block in re.split(r"\n(?=rule |use rule )", smk.read_text()):
            uses_model = "dag.model_threads" in block or "dag.served_threads" in block
            if block.startswith("rule ") and uses_model and "sft" not in smk.name:
                name = block.split()[1].rstrip(":")
                if name == "engine_service":
                    continue
                model_bound.append(name)
                assert "engine=dag.engine_version" in block, f"{smk.name}: rule {name}"
    assert {"extract_traces", "extract_attention", "score_breakdown", "marginalize"} <= set(
        model_bound
    )
    assert dag.engine_version == ENGINE_VERSION


def test_estimate_and_explorer_ask_the_one_method_kind_inputs(dag):
    """A trace-reading method's estimate reads its traces, and its run gets an explorer page;
    both come from EstimatorStage.method_kind_inputs."""
    dataset = dag.scored_datasets()[0]
    for run in dag.scored_runs(dataset):
        cell = W(dataset=dataset, **run)
        kind_inputs = dag.method_kind_inputs(
            run["method"], dataset, run["model"], run["prompt"], run["testset"]
        )
        if run["method"] in dag.methods_written_by("estimate").split("|"):
            assert dag.estimate_inputs(cell).items() >= kind_inputs.items()
        if "traces" in kind_inputs:
            page = {
                **run,
                "dataset": dataset,
                "model": dag.trace_model(run["method"], run["model"]),
            }
            page.pop("method")
            assert page in dag.explorer_cells()
