"""Experiments made of studies: each table/figure requests only its study's cells."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.data.prompts import PromptBuilder, resolve_prompt, select_demo_pool
from multilabel_llm.workflow.config import ConfigError, load_config, validate
from multilabel_llm.workflow.studies import (
    alignment_runs,
    evaluated_testsets,
    paper_tables,
    resolve_studies,
)
from tests._dag import run_snakemake, scratch_workdir


@pytest.fixture(scope="module")
def paper():
    cfg = load_config({"experiment": "paper"})
    return cfg, resolve_studies(cfg)


def test_paper_tables_use_the_main_prompt_not_the_alphabetically_first(paper):
    cfg, studies = paper
    tables = paper_tables(cfg, studies)
    assert tables["table2"] == {
        "model": "llama3-70b-instruct",
        "prompt": "main",
        "testset": "main_test_set",
    }
    assert tables["table5"]["model"] == "llama3-8b-instruct"
    assert sorted(cfg["prompts"])[0] != "main"  # the old default would have picked another


def test_single_label_datasets_get_no_multilabel_only_cells(paper):
    cfg, studies = paper
    for dataset in ("hatexplain", "msp_podcast"):
        assert "multilabel" not in evaluated_testsets(cfg, studies, dataset)
        methods = {r["method"] for r in alignment_runs(cfg, studies, dataset)}
        # N/A (multi-label only) and N/S (not supplied) cells of Tables 2/5 are never requested
        assert not methods & {"max_over_generations", "sft_max_over_generations"}
        assert not methods & {"probes", "sft_outputs"}
        assert {"compare_to_none", "unary_breakdown", "demux"} <= methods
    for study in studies.values():
        if study.kind != "alignment":
            assert not {"hatexplain", "msp_podcast"} & set(study.datasets), study.name


def test_paper_studies_match_the_paper(paper):
    cfg, studies = paper
    # Fig 12: Llama-2-70B base vs chat on GoEmotions and MFRC, main prompt only
    fig12 = studies["base_vs_instruct"]
    assert fig12.models == ["llama2-70b", "llama2-70b-chat"]
    assert fig12.datasets == ["goemotions", "mfrc"] and fig12.prompts == ["main"]
    assert fig12.testsets == ["main_test_set"]
    # Table 7: Llama3 8B base + instruct; alphabetical, random over 3 seeds, reverse
    order = studies["label_order"]
    assert order.models == ["llama3-8b", "llama3-8b-instruct"]
    orders = [cfg["prompts"][p]["label_order"] for p in order.prompts]
    assert orders.count("random") == 3 and {"alphabetical", "reverse"} <= set(orders)
    assert len({cfg["prompts"][p]["seed"] for p in order.prompts if "random" in p}) == 3
    # Fig 6: six ratios 0, 0.2, ..., 1.0
    ratios = [cfg["prompts"][p]["multilabel_ratio"] for p in studies["icl_ratio"].prompts]
    assert ratios == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    # SFT variants in the mechanism figures (Table 4), none on Boxes
    cells = studies["mechanisms"].trace_runs()
    sft = {(c["dataset"], c["model"]) for c in cells if c["model"].endswith("-sft")}
    assert ("semeval", "llama3-70b-instruct-sft") in sft
    assert not any(d == "boxes" for d, _ in sft)
    # the paper's BERT is bert-base-uncased
    assert cfg["training"]["demux"]["encoder"]["hf_id"] == "bert-base-uncased"


def test_every_paper_artifact_has_one_study(paper):
    _, studies = paper
    owned = [a for s in studies.values() for a in s.artifacts]
    figures = {f"fig{i}" for i in range(1, 17)}
    tables = {"table2", "table4", "table5", "table6", "table7"}
    assert figures | tables <= set(owned)
    assert len(owned) == len(set(owned))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("studies.mechanisms.datasets=[hatexplain]", "single-label"),
        ("studies.alignment.testsets=[multilabel]", "multi-label-only test set"),
        ("studies.alignment.testsets=[calibration]", "held-out set"),
        ("studies.probes.models=[gpt5]", "studies.probes.models"),
        ("+studies.label_order.artifacts=[fig2]", "is not produced by a .label_order. study"),
        ("roles.table2=llama2-70b", "roles.table2"),
        ("+studies.extra.kind=nonsense", "studies.extra.kind"),
    ],
)
def test_bad_studies_stop_before_anything_runs(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"experiment": "paper", "overrides": override})


def test_default_studies_for_an_experiment_without_them():
    cfg = load_config({"experiment": "demo"})
    cfg = copy.deepcopy(cfg)
    del cfg["studies"]
    validate(cfg)
    studies = resolve_studies(cfg)
    assert {"alignment", "mechanisms", "icl_ratio"} <= set(studies)
    assert studies["mechanisms"].datasets == ["goemotions"]  # hatexplain is single-label


def _toy_dataset() -> CanonicalDataset:
    labels = ["joy", "sadness", "anger"]
    rows = []
    for i in range(40):
        labs = [labels[i % 3]] + ([labels[(i + 1) % 3]] if i % 2 else [])
        rows.append({"id": f"t{i}", "split": "train", "text": f"train text {i}", "labels": labs})
    for i in range(10):
        rows.append({"id": f"d{i}", "split": "dev", "text": f"dev text {i}", "labels": ["joy"]})
    frame = pd.DataFrame(rows)
    frame["annotators"] = [["r1"]] * len(frame)
    frame["annotator_labels"] = [[x] for x in frame["labels"]]
    frame["n_annotators"] = 1
    for lab in labels:
        frame[f"h_{lab}"] = [float(lab in x) for x in frame["labels"]]
    return CanonicalDataset("toy", labels, True, frame)


def test_runs_of_a_prompt_share_their_demos():
    """Probe-train, calibration and scored runs (issue: 0-2 of 10 demos were shared)."""
    dataset = _toy_dataset()
    evaluated = {
        "main_test_set": [f"d{i}" for i in range(5)],
        "calibration": [f"t{i}" for i in range(0, 8)],
        "probe_train": [f"t{i}" for i in range(8, 20)],
    }
    pool = select_demo_pool(dataset, "train", evaluated, need=10)
    assert not set(pool) & set().union(*evaluated.values())
    template = {"instruction": "{labels}\n", "example": "{text}\n{label}\n"}
    spec = resolve_prompt({"name": "p", "templates": {"default": template}}, "toy")
    demos = {
        name: PromptBuilder.from_dataset(spec, dataset, "train", exclude=ids, pool_ids=pool).demos
        for name, ids in evaluated.items()
    }
    assert demos["main_test_set"] == demos["calibration"] == demos["probe_train"]
    with pytest.raises(ValueError, match="scored ids are in the shared demo pool"):
        PromptBuilder.from_dataset(spec, dataset, "train", exclude=["t30"], pool_ids=pool)


def test_demo_pool_too_small_names_the_test_sets():
    dataset = _toy_dataset()
    with pytest.raises(ValueError, match="probe_train"):
        select_demo_pool(dataset, "train", {"probe_train": [f"t{i}" for i in range(35)]}, 10)


def test_config_time_check_rejects_an_all_train_probe_set_with_train_demos():
    with pytest.raises(ConfigError, match="probe_train"):
        load_config(
            {
                "experiment": "paper",
                "overrides": "datasets.goemotions.testsets.probe_train={kind: all, splits: [train]}",
            }
        )


def test_breakdown_scores_do_not_depend_on_the_prompt_variant(paper):
    """Breakdown prompts have their own demos: one job per (dataset, model, test set)."""
    cfg, _ = paper
    assert "breakdown" not in cfg["prompts"]["main"]
    assert cfg["breakdown"]["n_shots"] == 10


def test_shipped_experiments_resolve():
    for experiment in ("demo", "tiny", "slurm_test", "paper"):
        cfg = load_config({"experiment": experiment})
        assert resolve_studies(cfg), experiment


def test_alignment_cells_are_deduplicated_across_studies(paper):
    cfg, studies = paper
    runs = alignment_runs(cfg, studies, "goemotions")
    keys = [tuple(sorted(r.items())) for r in runs]
    assert len(keys) == len(set(keys))
    # Fig 12's Llama-2 runs and Table 2's Llama-3 runs feed the same alignment table
    assert {"llama2-70b", "llama3-70b-instruct"} <= {r["model"] for r in runs}


def test_boxes_is_prompted_about_objects_not_emotions(paper):
    from multilabel_llm.data.prompts import pick_template

    cfg, _ = paper
    for slot in ("main", "icl40", "reverse"):
        prompt = cfg["prompts"][slot]
        spec = resolve_prompt(prompt, "boxes", pick_template(prompt, "boxes", "boxes"))
        assert "objects" in spec.instruction and "emotion" not in spec.instruction, slot


NO_HIDDEN = "prompts.json10.hidden_states=false"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # the demo's alignment study scores the probes method with prompt json10
        (NO_HIDDEN, r"'prompts.json10.hidden_states': study 'alignment' scores method 'probes'"),
        # without that method, the probes study (Fig 7) still reads json10's hidden states
        (
            f"{NO_HIDDEN} ~methods.probes",
            r"'prompts.json10.hidden_states': study 'probes' lists \['fig7'\].*set "
            r"prompts.json10.hidden_states: true",
        ),
    ],
)
def test_listed_probe_study_without_hidden_states_stops_at_config_time(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"experiment": "demo", "overrides": override})


def test_default_studies_leave_out_probes_without_hidden_states():
    """Without ``studies:`` the experiment gets what it can produce: no Fig 7, no probes
    method, no probe test sets, the rest unchanged."""
    with_hidden = resolve_studies(load_config({"experiment": "demo", "overrides": "~studies"}))
    assert with_hidden["probes"].artifacts == ["fig7"]
    assert "probes" in with_hidden["alignment"].methods
    cfg = load_config({"experiment": "demo", "overrides": f"~studies {NO_HIDDEN}"})
    studies = resolve_studies(cfg)
    assert "probes" not in studies  # its only artifact is Fig 7
    assert not any({"fig7", "fig15"} & set(s.artifacts) for s in studies.values())
    assert "probes" not in studies["alignment"].methods
    assert studies["alignment"].methods == [
        m for m in with_hidden["alignment"].methods if m != "probes"
    ]
    assert set(studies) == set(with_hidden) - {"probes"}
    assert not {"probe_train", "probe_eval"} & set(evaluated_testsets(cfg, studies, "goemotions"))


def test_dag_without_hidden_states_builds(tmp_path):
    """Issue 15: a dataset and a prompt without hidden_states failed the DAG with a missing
    hidden.npz for train_probes; now the default studies skip the probes (dry run)."""
    work = scratch_workdir(tmp_path, "data")
    proc = run_snakemake(
        work, "-n", "--config", "experiment=slurm_test", "overrides=~studies", timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MissingInputException" not in proc.stderr
    # by output path, not rule name (one rule draws every figure)
    assert "train_probes" not in proc.stdout and "figures/fig7.png" not in proc.stdout
    assert "figures/fig2.png" in proc.stdout  # the other default studies are still planned
    assert "fig7 left out (default studies)" in proc.stderr


def test_studies_and_the_dag_read_the_method_registry_without_pandas():
    """The DAG imports studies at every parse; both take the method kinds from the registry,
    which must not pull in pandas or scipy (the estimators do)."""
    import subprocess
    import sys

    code = (
        "import sys, multilabel_llm.workflow.dag; "
        "heavy = {'pandas', 'scipy', 'torch'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
