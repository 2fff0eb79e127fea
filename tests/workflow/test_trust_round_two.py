"""Issue 26: the silent wrong results and unclear failures a hostile-input run still found.

Config-level checks (label named ``none``, a label listed twice, a ``path`` a GGUF would
shadow), the demo pool's demonstration count and the config key it comes from, and the
loaders' label-name check. Each runs in well under a second (no Snakemake run).
"""

from __future__ import annotations

import pytest

from multilabel_llm.data import prepare
from multilabel_llm.data._common import DatasetFormatError
from multilabel_llm.workflow.config import ConfigError, compose, validate

# --- item 1: a dataset label named like the no-label answer --------------------------------------


def test_label_named_none_is_refused_in_the_config():
    cfg = compose("demo", ["+datasets.goemotions.labels=[joy,None,anger]"])
    with pytest.raises(ConfigError, match=r"'datasets.goemotions.labels': 'None' is the pipeline"):
        validate(cfg)


def test_label_named_none_is_refused_by_the_loader(tmp_path):
    (tmp_path / "d.jsonl").write_text(
        '{"id": "a", "text": "hi", "labels": ["joy"]}\n{"id": "b", "text": "yo", "labels": ["NONE "]}\n'
    )
    cfg = {"name": "g", "loader": "generic", "multilabel": True, "files": {"data": "d.jsonl"}}
    cfg["labels"] = ["joy", "NONE "]
    with pytest.raises(DatasetFormatError, match=r"label 'NONE ' is the pipeline's own no-label"):
        prepare(cfg, tmp_path)


# --- item 5: a label listed twice -------------------------------------------------------------


def test_label_listed_twice_is_refused_in_the_config():
    cfg = compose("demo", ["+datasets.goemotions.labels=[joy,anger,joy]"])
    with pytest.raises(ConfigError, match=r"'datasets.goemotions.labels': \['joy'\] listed more"):
        validate(cfg)


def test_label_listed_twice_is_refused_by_the_loader(tmp_path):
    (tmp_path / "d.csv").write_text("id,text,labels\na,hello,joy\nb,bye,anger\n")
    cfg = {"loader": "generic", "multilabel": True, "files": {"data": "d.csv"}}
    cfg["labels"] = ["joy", "anger", "joy"]
    with pytest.raises(DatasetFormatError, match=r"labels \['joy'\] appear more than once"):
        prepare(cfg, tmp_path)


# --- item 2: a model path that the slot's GGUF would shadow -------------------------------------


def test_model_path_next_to_a_gguf_is_refused():
    cfg = compose("demo", ["models.smollm2.path=/no/such/checkpoint"])
    with pytest.raises(ConfigError, match=r"'models.smollm2.path': '/no/such/checkpoint' would be"):
        validate(cfg)
    validate(compose("demo", ["models.smollm2.path=/some/ckpt", "models.smollm2.gguf=null"]))


# --- item 6: the demo pool counts breakdown shots only where a breakdown runs -------------------


def _dag(*overrides):
    from multilabel_llm.workflow.dag import WorkflowDag

    return WorkflowDag.compose({"experiment": "demo", "overrides": list(overrides)})


def test_demo_shots_name_the_config_key_asking_for_them():
    dag = _dag("prompts.json10.n_shots=2", "prompts.alphabetical.n_shots=2",
               "prompts.reverse.n_shots=2", "prompts.icl00.n_shots=2",
               "prompts.icl100.n_shots=2", "breakdown.n_shots=7")  # fmt: skip
    assert dag.demo_shots_asked("goemotions") == (7, "breakdown.n_shots")  # breakdowns run


def test_demo_shots_leave_out_breakdown_when_no_breakdown_method_runs():
    methods = "[compare_to_none,hard_predictions]"
    dag = _dag(f"+studies.alignment.methods={methods}", f"+studies.base_vs_instruct.methods={methods}",
               "prompts.json10.n_shots=2", "prompts.alphabetical.n_shots=3",
               "prompts.reverse.n_shots=2", "prompts.icl00.n_shots=2",
               "prompts.icl100.n_shots=2", "breakdown.n_shots=10")  # fmt: skip
    assert dag.demo_shots_asked("goemotions") == (3, "prompts.alphabetical.n_shots")


# --- item 10: each experiment its own outputs -----------------------------------------------


def test_each_experiment_writes_its_own_results_folder():
    from multilabel_llm.workflow.config import load_config
    from multilabel_llm.workflow.dag import WorkflowDag

    demo, smoke = (WorkflowDag.compose({"experiment": e}) for e in ("demo", "paper_smoke"))
    assert demo.results == "results"  # make demo and the README's paths
    assert smoke.results == "results/paper_smoke"
    # the same slot name, two different configs: two different prepared tables
    assert demo.data("goemotions", "examples.parquet") != smoke.data(
        "goemotions", "examples.parquet"
    )
    assert load_config({"experiment": "paper", "results_dir": "out"})["results_dir"] == "out"


def test_an_experiment_named_like_a_demo_output_folder_is_refused():
    from multilabel_llm.workflow.config import default_results_dir

    with pytest.raises(ConfigError, match=r"'experiment': 'tables' would put .* results/tables/"):
        default_results_dir("tables")


# --- item 11: what a size class decides ------------------------------------------------------


def test_size_class_decides_traces_only_through_its_batch_size():
    def decided(*overrides):
        return _dag(*overrides).decided_model_content("smollm2")

    b1 = ("models.smollm2.size_class=b1",)
    assert decided(*b1, "+models.smollm2.threads=7") == decided(*b1)  # threads: nothing reruns
    same_batch = ("models.smollm2.size_class=b8", "resources.size_classes.b8.batch_size=128")
    assert decided(*same_batch) == decided(*b1)  # another class, same batch: nothing reruns
    assert decided("models.smollm2.size_class=b8") != decided(*b1)  # batch 64 vs 128: reruns
