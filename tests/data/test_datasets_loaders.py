"""Loaders on small fixtures written in each dataset's real file format, and the Boxes generator."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest
import yaml

from multilabel_llm.data import prepare
from multilabel_llm.data.boxes import apply_operation, generate_example
from multilabel_llm.workflow.config import config_files

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "datasets"


def row(ds, ex_id):
    return ds.examples.set_index("id").loc[ex_id]


def mfrc_cfg():
    return {
        "name": "mfrc",
        "loader": "mfrc",
        "files": {
            "data": str(FIX / "mfrc/final_mfrc_data.csv"),
            "splits": str(FIX / "mfrc/splits.yaml"),
        },
    }


def test_mfrc_fixture(caplog):
    with caplog.at_level("WARNING"):
        ds = prepare(mfrc_cfg(), ROOT)
    assert ds.labels == ["authority", "care", "equality", "loyalty", "proportionality", "purity"]
    assert ds.examples["id"].tolist() == ["101", "102", "201", "301"]
    r = row(ds, "101")
    assert r["split"] == "train"
    assert r["annotator_labels"] == [["care"], ["authority", "care"], ["care"]]
    assert r["labels"] == ["care"]  # authority: 1/3 < 0.5
    assert r["h_care"] == 1.0 and r["h_authority"] == pytest.approx(1 / 3)
    # Non-Moral / Thin Morality alone = no foundation
    r = row(ds, "102")
    assert r["annotator_labels"] == [[], [], []] and r["labels"] == [] and r["h_care"] == 0.0
    # "Non-Moral,Loyalty" by annotator04 is dropped as the paper's code does; mean >= 0.5 keeps 1/2
    r = row(ds, "201")
    assert r["annotators"] == ["annotator00", "annotator03"]
    assert r["labels"] == ["loyalty", "proportionality"]
    assert r["h_proportionality"] == 0.5
    assert ds.notes["dropped"] == {
        "annotations mixing Non-Moral/Thin Morality with other labels (as in the paper's code)": 1,
        "annotation rows whose text is in no split of splits.yaml": 1,
    }
    assert "dropped 1" in caplog.text


def test_semeval_fixture():
    cfg = {
        "loader": "semeval",
        "files": {
            "train": str(FIX / "semeval/2018-E-c-En-train.txt"),
            "dev": str(FIX / "semeval/2018-E-c-En-dev.txt"),
        },
    }
    ds = prepare(cfg, ROOT)
    assert ds.labels[7] == "pessimism" and len(ds.labels) == 11
    assert not ds.has_annotators
    r = row(ds, "2018-En-01559")
    assert r["text"] == '@Aussie "we won" what a night #happy'  # quotes kept verbatim
    assert r["labels"] == ["anticipation", "joy", "optimism"]
    assert r["n_annotators"] == 0 and math.isnan(r["h_joy"])
    assert row(ds, "2018-En-00385")["labels"] == []
    assert row(ds, "2018-En-10001")["split"] == "dev"


def msp_cfg(**extra):
    return {
        "loader": "msp_podcast",
        "files": {
            "transcripts": str(FIX / "msp_podcast/transcripts.csv"),
            "labels_detailed": str(FIX / "msp_podcast/Labels/labels_detailed.csv"),
            "labels_consensus": str(FIX / "msp_podcast/Labels/labels_consensus.csv"),
        },
    } | extra


def test_msp_podcast_fixture():
    ds = prepare(msp_cfg(), ROOT)
    assert ds.labels == ["angry", "happy", "neutral", "sad"] and not ds.multilabel
    assert ds.examples["id"].tolist() == [
        "MSP-PODCAST_0001_0008",
        "MSP-PODCAST_0001_0010",
        "MSP-PODCAST_0003_0001",
    ]
    r = row(ds, "MSP-PODCAST_0001_0008")
    assert r["annotator_labels"] == [["happy"], ["happy"], ["neutral"]]
    assert r["labels"] == ["happy"]
    assert r["h_happy"] == pytest.approx(2 / 3) and r["h_neutral"] == pytest.approx(1 / 3)
    # Other-Shocked dropped; sad vs angry tie -> the first worker's label
    r = row(ds, "MSP-PODCAST_0001_0010")
    assert r["split"] == "dev" and r["labels"] == ["sad"] and r["h_angry"] == 0.5
    assert row(ds, "MSP-PODCAST_0003_0001")["split"] == "test"
    assert ds.notes["dropped"] == {
        "utterances in split sets other than ['Train', 'Development', 'Test1'] (e.g. Test2)": 1,
        "worker labels that are empty or 'Other' (as in the paper's code)": 1,
        "utterances without a transcript (as in the paper's code)": 1,
    }
    tied = prepare(msp_cfg(tie_break="label_order"), ROOT)
    assert row(tied, "MSP-PODCAST_0001_0010")["labels"] == ["angry"]


def test_boxes_original_jsonl():
    cfg = {
        "loader": "boxes",
        "files": {
            "objects": str(FIX / "boxes/objects.txt"),
            "train": str(FIX / "boxes/subset/train-subset-t5.jsonl"),
            "test": str(FIX / "boxes/subset/test-subsample-states-t5.jsonl"),
        },
    }
    ds = prepare(cfg, ROOT)
    assert ds.labels == ["apple", "bell", "car", "egg", "theater ticket"]
    assert ds.examples["id"].tolist()[:4] == ["7-0", "7-1", "8-0", "8-1"]
    r = row(ds, "7-0")
    assert r["text"].endswith("Move the car from Box 1 to Box 2. Box 2 contains")
    assert r["labels"] == ["car"]
    # "theater" keeps its letters (the paper's .replace("the", "") would give "ater ticket")
    assert row(ds, "8-0")["labels"] == ["bell", "theater ticket"]
    assert row(ds, "8-1")["labels"] == []


def boxes_cfg(seed=0):
    cfg = yaml.safe_load((ROOT / "config/dataset/boxes.yaml").read_text())
    cfg["generate"].update({"seed": seed, "n_train": 60, "n_dev": 0, "n_test": 40})
    return cfg


def test_boxes_generator_is_deterministic():
    a = prepare(boxes_cfg(0), ROOT).examples
    b = prepare(boxes_cfg(0), ROOT).examples
    c = prepare(boxes_cfg(1), ROOT).examples
    assert a[["id", "text"]].equals(b[["id", "text"]])
    assert a["labels"].tolist() == b["labels"].tolist()
    assert a["text"].tolist() != c["text"].tolist()
    counts = a["labels"].map(len)
    assert (counts == 0).any() and (counts == 1).any() and (counts >= 2).any()


def simulate_from_text(text: str) -> list[str]:
    """Independent re-simulation: parse the description and operations back out of the text."""
    description, _, rest = text.partition(". ")
    state = {}
    for box, content in re.findall(r"Box (\d+) contains ([^,]+?)(?=, Box|\.?$)", description):
        state[int(box)] = (
            [] if content == "nothing" else [c.removeprefix("the ") for c in content.split(" and ")]
        )
    for kind, obj, a, b in re.findall(
        r"(Move|Put|Remove) the (\w+) (?:from|into) Box (\d+)(?: to Box (\d+))?", rest
    ):
        if kind == "Move":
            state[int(a)].remove(obj)
            state[int(b)].append(obj)
        elif kind == "Put":
            state[int(a)].append(obj)
        else:
            state[int(a)].remove(obj)
    query = int(re.search(r"Box (\d+) contains$", text).group(1))
    return sorted(state[query])


def test_boxes_target_equals_simulated_final_state():
    ds = prepare(boxes_cfg(3), ROOT)
    for text, labels in zip(ds.examples["text"], ds.examples["labels"], strict=True):
        assert simulate_from_text(text) == labels


def test_boxes_generate_example_by_hand():
    rng = random.Random(5)
    text, target, initial, ops = generate_example(rng, ["a1", "b2", "c3", "d4"], 3, 2, 4)
    state = [list(b) for b in initial]
    for op in ops:
        apply_operation(state, op)
    query = int(text.rsplit(" ", 2)[-2])
    assert target == sorted(state[query])
    assert len(ops) == 4
    with pytest.raises(ValueError, match="already in a box"):
        apply_operation([["x"], []], ("put", "x", 1))


def test_generic_example_config():
    cfg = yaml.safe_load((ROOT / "config/dataset/generic_example.yaml").read_text())
    ds = prepare(cfg, ROOT)
    assert ds.labels == ["annoyance", "gratitude", "sarcasm", "surprise"]
    r = row(ds, "r2")  # surprise+annoyance / annoyance / surprise: both at 2/3
    assert r["labels"] == ["annoyance", "surprise"]
    assert r["h_annoyance"] == pytest.approx(2 / 3) and r["h_gratitude"] == 0.0
    r = row(ds, "r4")  # empty and "none" both mean no label
    assert r["annotator_labels"] == [[], [], []] and r["labels"] == []
    r = row(ds, "r8")  # an aggregate row (empty annotator) overrides the computed aggregate
    assert r["labels"] == ["sarcasm"] and r["n_annotators"] == 3
    assert r["h_sarcasm"] == 1.0 and r["h_gratitude"] == pytest.approx(1 / 3)
    assert row(ds, "r5")["labels"] == ["annoyance", "sarcasm"]  # 1/2 >= 0.5


def test_generic_jsonl_single_label(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"id": "x", "text": "hello", "annotator": "u1", "labels": ["pos"]}\n'
        '{"id": "x", "text": "hello", "annotator": "u2", "labels": "neg"}\n'
        '{"id": "x", "text": "hello", "annotator": "u3", "labels": "neg"}\n'
        '{"id": "y", "text": "bye", "labels": ["pos"], "split": "train"}\n'
    )
    ds = prepare({"loader": "generic", "multilabel": False, "files": {"data": str(path)}}, tmp_path)
    assert ds.labels == ["neg", "pos"]
    assert row(ds, "x")["labels"] == ["neg"] and row(ds, "x")["split"] == "test"
    assert row(ds, "x")["h_neg"] == pytest.approx(2 / 3)
    assert row(ds, "y")["n_annotators"] == 0 and math.isnan(row(ds, "y")["h_pos"])


@pytest.mark.parametrize("path", config_files("dataset"), ids=lambda p: p.stem)
def test_every_dataset_config_matches_schema(path):
    import jsonschema

    schema = yaml.safe_load((ROOT / "workflow/schemas/dataset.schema.yaml").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)
