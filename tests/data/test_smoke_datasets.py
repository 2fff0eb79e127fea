"""The six `<dataset>_smoke` configs of the paper_smoke experiment prepare and yield their test sets."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from multilabel_llm.core.io import read_id_list
from multilabel_llm.data import input_files, prepare
from multilabel_llm.data.prompts import PromptSpec, sample_demos, select_demo_pool
from multilabel_llm.data.testsets import build_testset, get_testset_cfg
from multilabel_llm.workflow.config import config_files

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ["goemotions", "mfrc", "semeval", "boxes", "hatexplain", "msp_podcast"]
# the published list each smoke ids_file set is a subset of
PAPER_LISTS = {
    ("goemotions", "main_test_set"): "GoEmotions/main_test_set.txt",
    ("goemotions", "multilabel"): "GoEmotions/big_multilabel.txt",
    ("mfrc", "main_test_set"): "MFRC/main_test_set.txt",
    ("mfrc", "multilabel"): "MFRC/big_multilabel.txt",
    ("semeval", "main_test_set"): "SemEval/main_test_set.txt",
    ("hatexplain", "main_test_set"): "Hatexplain/main_test_set.txt",
    ("msp_podcast", "main_test_set"): "MSPPodcast/main_test_set.txt",
}
SIZES = {"main_test_set": (2, 3), "multilabel": (2, 2), "calibration": (3, 3),
         "probe_train": (8, 8), "probe_eval": (4, 4)}  # fmt: skip
# datasets whose real release has per-annotator labels
ANNOTATED = {"goemotions", "mfrc", "hatexplain", "msp_podcast"}


def config(name: str) -> dict:
    """A dataset option of config/ or, for the `_smoke` ones, of the test tree tests/config."""
    (path,) = [p for p in config_files("dataset") if p.stem == name]
    return yaml.safe_load(path.read_text())


def real_labels(name: str) -> list[str]:
    """The label set the paper config's data has (order as the loader writes it)."""
    if name == "goemotions":
        return list(json.loads((ROOT / "data/goemotions/emotion_clustering.json").read_text()))
    if name == "boxes":
        return sorted(config("boxes")["generate"]["objects"])
    return {
        "mfrc": ["authority", "care", "equality", "loyalty", "proportionality", "purity"],
        "semeval": ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism",
                    "pessimism", "sadness", "surprise", "trust"],
        "hatexplain": ["hate", "normal", "offensive"],
        "msp_podcast": ["angry", "contempt", "disgust", "fear", "happy", "neutral", "sad",
                        "surprise"],
    }[name]  # fmt: skip


@pytest.fixture(scope="module", params=DATASETS)
def smoke(request):
    name = request.param
    cfg = config(f"{name}_smoke")
    return name, cfg, prepare(cfg, ROOT)


def test_smoke_config_mirrors_the_paper_config(smoke):
    name, cfg, _ = smoke
    schema = yaml.safe_load((ROOT / "workflow/schemas/dataset.schema.yaml").read_text())
    jsonschema.validate(cfg, schema)
    paper = config(name)
    for key in ("name", "loader", "multilabel", "test_splits", "demo_split"):
        assert cfg[key] == paper[key], key
    assert set(cfg["testsets"]) == set(paper["testsets"])  # same test-set names
    files = [f for f in input_files(cfg, ROOT) if f.startswith("tests/fixtures/")]
    assert files and all(f.startswith(f"tests/fixtures/paper_smoke/{name}/") for f in files)


def test_smoke_dataset_has_enough_examples(smoke):
    name, cfg, ds = smoke
    assert ds.name == name and ds.labels == real_labels(name)
    assert ds.has_annotators == (name in ANNOTATED)
    frame = ds.examples
    n_labels = frame["labels"].map(len)
    train = frame["split"] == "train"
    pool = frame["split"].isin(cfg["test_splits"])
    assert train.sum() >= 40 and pool.sum() >= 12
    if ds.multilabel:
        assert (n_labels[train] >= 2).sum() >= 15 and (n_labels[pool] >= 2).sum() >= 4
        assert (n_labels[train] == 1).sum() >= 12  # a single-label-only prompt finds its demos too
    else:
        assert set(label for labs in frame.loc[train, "labels"] for label in labs) == set(ds.labels)
    if name in ANNOTATED:
        assert (frame["n_annotators"] >= 1).all()
        assert (frame.loc[train, "n_annotators"] >= 2).sum() >= 20  # some disagreement possible


def test_smoke_testsets_build_tiny(smoke):
    name, cfg, ds = smoke
    split_of = dict(zip(ds.examples["id"], ds.examples["split"], strict=True))
    built = {}
    for testset in cfg["testsets"]:
        spec = get_testset_cfg(cfg, testset, ROOT)
        ids = build_testset(ds, testset, spec)
        low, high = SIZES[testset]
        assert low <= len(ids) <= high, (testset, len(ids))
        assert {split_of[i] for i in ids} <= set(spec["splits"])
        if (name, testset) in PAPER_LISTS:
            assert spec["kind"] == "ids_file"
            published = read_id_list(ROOT / "data/paper-test-ids" / PAPER_LISTS[(name, testset)])
            assert set(ids) <= set(published)
        built[testset] = ids
    if ds.multilabel:
        multi = ds.examples.set_index("id").loc[built["multilabel"], "labels"]
        assert (multi.map(len) >= 2).all()
    else:
        assert "multilabel" not in cfg["testsets"]
    assert {split_of[i] for i in built["calibration"] + built["probe_train"]} == {"train"}


def test_smoke_ten_shot_prompts_find_their_demos(smoke):
    """Every evaluated test set leaves the train pool enough demos for ratios 0 and 1."""
    _, cfg, ds = smoke
    evaluated = {t: build_testset(ds, t, get_testset_cfg(cfg, t, ROOT)) for t in cfg["testsets"]}
    pool_ids = select_demo_pool(ds, cfg["demo_split"], evaluated, need=10)
    pool = ds.examples[ds.examples["id"].isin(set(pool_ids))]
    for ratio in (0.0, 1.0):
        spec = PromptSpec(
            name="smoke",
            instruction="{labels}\n",
            example="{text} {label}\n",
            multilabel_ratio=ratio,
        )
        demos = sample_demos(pool, spec, ds.labels, ds.multilabel)
        assert len(demos) == 10
        if ds.multilabel:
            n_multi = int((demos["labels"].map(len) >= 2).sum())
            assert n_multi == (10 if ratio == 1.0 else 0)
