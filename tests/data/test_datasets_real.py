"""Loaders on the real published files: the shipped excerpts in data/ and ../shared/data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from multilabel_llm.data import input_files, load_canonical, prepare, save_canonical

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")

POOLED = ["joy", "optimism", "admiration", "surprise", "fear", "sadness", "anger"]


def config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / "dataset" / f"{name}.yaml").read_text())


def row(ds, ex_id):
    frame = ds.examples.set_index("id")
    return frame.loc[ex_id]


@pytest.fixture(scope="module")
def goemotions_demo():
    return prepare(config("goemotions_demo"), ROOT)


@pytest.fixture(scope="module")
def goemotions_shared():
    cfg = {
        "name": "goemotions_shared",
        "loader": "goemotions",
        "files": {
            "train": SHARED / "goemotions/train.tsv",
            "dev": SHARED / "goemotions/dev.tsv",
            "test": SHARED / "goemotions/test.tsv",
            "emotions": SHARED / "goemotions/emotions.txt",
            "raters": [SHARED / "goemotions/goemotions_1_partial_first_rows.csv"],
        },
        "pooling": ROOT / "data/goemotions/emotion_clustering.json",
    }
    return prepare(cfg, ROOT)


def test_goemotions_demo_known_example(goemotions_demo):
    ds = goemotions_demo
    assert ds.labels == POOLED
    assert ds.multilabel and ds.has_annotators
    # ed4nryi (dev): TSV labels 1,17 = amusement, joy; rater 8 chose amusement+joy, rater 27 remorse
    r = row(ds, "ed4nryi")
    assert r["split"] == "dev"
    assert r["text"].startswith("I have silvered it as it was what I was thinking")
    assert r["labels"] == ["joy"]
    assert r["annotators"] == ["8", "27"]
    assert r["annotator_labels"] == [["joy"], ["sadness"]]
    assert r["n_annotators"] == 2
    assert r["h_joy"] == 0.5 and r["h_sadness"] == 0.5
    assert all(r[f"h_{lab}"] == 0.0 for lab in POOLED if lab not in ("joy", "sadness"))


def test_goemotions_neutral_means_no_emotion(goemotions_demo):
    # ee79fyf: TSV 5,27 = caring, neutral; rater 38 caring, rater 50 neutral
    r = row(goemotions_demo, "ee79fyf")
    assert r["labels"] == ["optimism"]
    assert r["annotator_labels"] == [["optimism"], []]
    assert r["h_optimism"] == 0.5


def test_goemotions_demo_shape(goemotions_demo):
    counts = goemotions_demo.examples["split"].value_counts().to_dict()
    assert counts == {"train": 300, "dev": 100, "test": 50}
    train = goemotions_demo.split("train")
    # enough demonstrations for the paper's 10-shot sampler (5 multi + 5 single)
    assert (train["labels"].map(len) >= 2).sum() >= 5
    assert (train["labels"].map(len) == 1).sum() >= 5
    assert (goemotions_demo.examples["n_annotators"] >= 1).all()


def test_save_and_load_roundtrip(goemotions_demo, tmp_path):
    save_canonical(goemotions_demo, tmp_path)
    back = load_canonical(tmp_path)
    assert back.labels == POOLED
    assert back.notes["n_examples"]["dev"] == 100
    r = back.examples.set_index("id").loc["ed4nryi"]
    assert r["annotator_labels"] == [["joy"], ["sadness"]]


def test_input_files_lists_existing_files_only():
    cfg = config("goemotions_demo")
    found = input_files(cfg, ROOT)
    assert "data/goemotions/train.tsv" in found
    assert "data/goemotions/goemotions_1_excerpt.csv" in found
    assert "data/goemotions/emotion_clustering.json" in found
    assert input_files(config("goemotions"), ROOT / "no-such-root") == []


@needs_shared
def test_goemotions_shared_full_tsvs(goemotions_shared):
    ds = goemotions_shared
    counts = ds.examples["split"].value_counts().to_dict()
    assert counts == {"train": 43410, "dev": 5426, "test": 5427}
    # eebbqej: "My favourite food is ..." labelled 27 (neutral) -> no labels
    assert row(ds, "eebbqej")["labels"] == []
    # eewcr3u (dev): raters 60 approval -> admiration, 14 amusement+joy -> joy; TSV 1,17 -> joy
    r = row(ds, "eewcr3u")
    assert r["labels"] == ["joy"]
    assert r["annotators"] == ["60", "14"]
    assert r["annotator_labels"] == [["admiration"], ["joy"]]
    assert (r["h_joy"], r["h_admiration"], r["h_anger"]) == (0.5, 0.5, 0.0)
    # most comments have no row in the 4,894-row raw excerpt: NaN distribution, logged in notes
    assert ds.notes["examples_without_raters"] == 54263 - (3461 + 438 + 423)
    assert math.isnan(row(ds, "eebbqej")["h_joy"])


@needs_shared
def test_goemotions_without_pooling_keeps_27_emotions():
    cfg = {
        "loader": "goemotions",
        "files": {
            "dev": SHARED / "goemotions/dev.tsv",
            "emotions": SHARED / "goemotions/emotions.txt",
            "raters": str(SHARED / "goemotions/goemotions_1_partial_first_rows.csv"),
        },
    }
    ds = prepare(cfg, ROOT)
    assert len(ds.labels) == 27 and "neutral" not in ds.labels
    r = row(ds, "ed4nryi")
    assert r["labels"] == ["amusement", "joy"]
    assert r["annotator_labels"] == [["amusement", "joy"], ["remorse"]]
    assert (r["h_amusement"], r["h_joy"], r["h_remorse"]) == (0.5, 0.5, 0.5)


@needs_shared
def test_goemotions_tsv_only_says_raters_missing(caplog):
    cfg = {
        "loader": "goemotions",
        "files": {
            "dev": SHARED / "goemotions/dev.tsv",
            "emotions": SHARED / "goemotions/emotions.txt",
        },
        "pooling": ROOT / "data/goemotions/emotion_clustering.json",
    }
    with caplog.at_level("WARNING"):
        ds = prepare(cfg, ROOT)
    assert not ds.has_annotators
    assert "no per-rater files" in ds.notes["raters"]
    assert "no per-rater files" in caplog.text
    assert row(ds, "ed4nryi")["labels"] == ["joy"]
    assert math.isnan(row(ds, "ed4nryi")["h_joy"])


def hatexplain_shared_cfg(**extra):
    return {
        "loader": "hatexplain",
        "files": {
            "train": SHARED / "hatexplain/hatexplain_train_peranno_labels_with_post_id.csv",
            "dev": SHARED / "hatexplain/hatexplain_validation.json",
            "test": SHARED / "hatexplain/hatexplain_test.json",
        },
    } | extra


@needs_shared
def test_hatexplain_shared_json_and_csv():
    ds = prepare(hatexplain_shared_cfg(), ROOT)
    assert ds.labels == ["hate", "normal", "offensive"] and not ds.multilabel
    assert ds.examples["split"].value_counts().to_dict() == {
        "train": 15383,
        "dev": 1922,
        "test": 1924,
    }
    # JSON Lines: labels [2, 1, 1] by annotators 200, 199, 211 -> normal
    r = row(ds, "1165785686903009283_twitter")
    assert r["split"] == "test"
    assert r["text"].startswith("<user> you are missing an essential premise")
    assert r["annotators"] == ["200", "199", "211"]
    assert r["annotator_labels"] == [["offensive"], ["normal"], ["normal"]]
    assert r["labels"] == ["normal"]
    assert r["h_normal"] == pytest.approx(2 / 3) and r["h_offensive"] == pytest.approx(1 / 3)
    assert r["h_hate"] == 0.0
    # CSV: labels "0, 2, 2" by 203, 204, 233 -> offensive
    r = row(ds, "23107796_gab")
    assert r["split"] == "train"
    assert r["annotator_labels"] == [["hate"], ["offensive"], ["offensive"]]
    assert r["labels"] == ["offensive"]
    assert r["h_hate"] == pytest.approx(1 / 3) and r["h_offensive"] == pytest.approx(2 / 3)


@needs_shared
def test_hatexplain_shared_has_no_three_way_ties():
    frame = prepare(hatexplain_shared_cfg(), ROOT).examples
    assert not frame["annotator_labels"].map(lambda a: len({x[0] for x in a}) == 3).any()


def test_hatexplain_ties_first_label_order_drop(tmp_path, caplog):
    line = (
        '{"id":"t1","annotators":{"label":[2,0,1],"annotator_id":[5,6,7],"target":[[],[],[]]},'
        '"rationales":[],"post_tokens":["a","b"]}\n'
        '{"id":"t2","annotators":{"label":[1,1,0],"annotator_id":[5,6,7],"target":[[],[],[]]},'
        '"rationales":[],"post_tokens":["c"]}\n'
    )
    path = tmp_path / "test.json"
    path.write_text(line)
    base = {"loader": "hatexplain", "files": {"test": str(path)}}
    assert row(prepare(base, tmp_path), "t1")["labels"] == ["offensive"]  # first annotator's
    assert row(prepare(base | {"tie_break": "label_order"}, tmp_path), "t1")["labels"] == ["hate"]
    with caplog.at_level("WARNING"):
        dropped = prepare(base | {"tie_break": "drop"}, tmp_path)
    assert dropped.examples["id"].tolist() == ["t2"]
    assert dropped.notes["dropped"] == {"posts whose annotators all disagree (tie_break: drop)": 1}
    assert "dropped 1" in caplog.text


def test_hatexplain_demo_excerpt():
    ds = prepare(config("hatexplain_demo"), ROOT)
    assert ds.examples["split"].value_counts().to_dict() == {"train": 150, "test": 253, "dev": 40}
    assert (ds.examples["n_annotators"] == 3).all()
    sums = ds.human_distribution().sum(axis=1)
    assert sums.round(9).eq(1.0).all()  # single-label: every annotator picks exactly one label
