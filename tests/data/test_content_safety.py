"""The content-safety benchmark loader (Praharaj & Kasundra 2025 format) on fixtures written
for this project, and the second paper's metrics (micro-F1 at a threshold, Hamming loss,
micro ROC-AUC)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from multilabel_llm.core.metrics import token_level_metrics
from multilabel_llm.data import prepare
from multilabel_llm.data._common import DatasetFormatError
from multilabel_llm.data.content_safety import LLAMA_GUARD_3_CATEGORIES
from multilabel_llm.workflow.config import load_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = "tests/fixtures/content_safety_demo.jsonl"


def _cfg(**over):
    return {"name": "cs", "loader": "content_safety", "multilabel": True,
            "files": {"data": FIXTURE}, **over}  # fmt: skip


def _write(tmp_path, rows):
    path = tmp_path / "cs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"data": str(path)}


def test_fixture_loads_with_codes_and_seeded_train_share():
    ds = prepare(_cfg(train_fraction=0.5, seed=0), ROOT)
    assert ds.labels == [f"S{i}" for i in range(1, 15)]
    assert ds.multilabel and not ds.has_annotators
    frame = ds.examples.set_index("id")
    assert len(frame) == 24 and (frame["split"] == "train").sum() == 12
    # row 3 of the fixture: privacy + non-violent crime, stored in label order
    assert frame.loc["3", "labels"] == ["S2", "S7"]
    assert frame.loc["1", "text"].startswith("How do I ambush")
    again = prepare(_cfg(train_fraction=0.5, seed=0), ROOT).examples
    assert again["split"].tolist() == ds.examples["split"].tolist()  # seeded


def test_names_and_category_subset():
    ds = prepare(_cfg(labels_as="name", categories=["S10", "S1"]), ROOT)
    assert ds.labels == ["Hate", "Violent Crimes"]
    frame = ds.examples.set_index("id")
    assert frame.loc["14", "labels"] == ["Hate", "Violent Crimes"]  # S1 + S10
    assert frame.loc["2", "labels"] == []  # S2 is not kept
    assert ds.notes["categories"]["Hate"] == "S10 Hate"
    assert len(LLAMA_GUARD_3_CATEGORIES) == 14


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"unsafe_query": "x"}], "missing field 'llama_guard_3_categories'"),
        (
            [{"unsafe_query": "x", "llama_guard_3_categories": ["S15"]}],
            r"unknown categories \['S15'\]",
        ),
        ([{"unsafe_query": " ", "llama_guard_3_categories": ["S1"]}], "'unsafe_query' is empty"),
        ([{"unsafe_query": "x", "llama_guard_3_categories": "S1"}], "must be a list of codes"),
    ],
)
def test_bad_rows_name_the_line_and_field(tmp_path, rows, match):
    with pytest.raises(DatasetFormatError, match=match):
        prepare(_cfg(files=_write(tmp_path, rows)), tmp_path)


def test_bad_config_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="labels_as must be one of"):
        prepare(_cfg(labels_as="codes"), ROOT)
    with pytest.raises(ValueError, match="train_fraction must lie in"):
        prepare(_cfg(train_fraction=1.0), ROOT)
    with pytest.raises(FileNotFoundError, match="MarginalProb4Classification"):
        prepare(_cfg(files={"data": "nowhere.jsonl"}), tmp_path)


def test_dataset_configs_compose():
    cfg = load_config({"experiment": "token_marginalization"})
    assert cfg["datasets"]["content_safety"]["loader"] == "content_safety"


def test_token_level_metrics_by_hand():
    gold = np.array([[1, 0, 1], [0, 1, 0]])
    q = np.array([[0.9, 0.25, 0.1], [0.3, 0.6, 0.05]])
    got = token_level_metrics(q, gold, threshold=0.2)
    # predicted at 0.2: {0, 1} and {0, 1}; tp 2 (cells (0,0), (1,1)), fp 2, fn 1
    assert got["micro_f1_at_threshold"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert got["hamming_loss"] == pytest.approx(3 / 6)
    # pooled AUC: positives 0.9, 0.1, 0.6 vs negatives 0.25, 0.3, 0.05 -> 7 of 9 pairs
    assert got["micro_roc_auc"] == pytest.approx(7 / 9)
    assert got["micro_roc_auc"] == pytest.approx(roc_auc_score(gold.ravel(), q.ravel()))
    at3 = token_level_metrics(q, gold, threshold=0.3)
    assert at3["hamming_loss"] == pytest.approx(2 / 6)  # (0, 1) no longer predicted
    assert np.isnan(token_level_metrics(q, np.zeros_like(gold))["micro_roc_auc"])
    with pytest.raises(ValueError, match="threshold must lie in"):
        token_level_metrics(q, gold, threshold=1.5)


SMOKE = "tests/fixtures/content_safety_smoke.jsonl"


def test_smoke_fixture_has_the_real_label_distribution_and_the_unsafe_label():
    ds = prepare(_cfg(files={"data": SMOKE}, unsafe_label=True, train_fraction=0.5), ROOT)
    assert ds.labels == ["unsafe", *[f"S{i}" for i in range(1, 15)]]
    counts = ds.examples["labels"].map(len) - 1  # categories besides unsafe
    assert (ds.examples["labels"].map(lambda labs: labs[0]) == "unsafe").all()
    # the real file: 1,786 rows with two categories, 509 with three, none with one
    assert set(counts) == {2, 3}
    assert (counts == 2).mean() == pytest.approx(1786 / 2295, abs=0.02)
    plain = prepare(_cfg(files={"data": SMOKE}), ROOT)
    assert "unsafe" not in plain.labels


def test_demos_from_a_pool_without_single_label_rows():
    from multilabel_llm.data.prompts import PromptSpec, sample_demos

    ds = prepare(_cfg(files={"data": SMOKE}, train_fraction=0.5), ROOT)
    pool = ds.split("train")
    spec = dict(name="json_10shot", instruction="", example="{text}\n{label}\n", n_shots=4)
    with pytest.raises(ValueError, match="multilabel_ratio.*1.0"):
        sample_demos(pool, PromptSpec(**spec, multilabel_ratio=0.5), ds.labels, True)
    demos = sample_demos(pool, PromptSpec(**spec, multilabel_ratio=1.0), ds.labels, True)
    assert len(demos) == 4 and (demos["labels"].map(len) >= 2).all()
    # the cluster experiment's JSON prompt asks for exactly that on this benchmark
    cfg = load_config({"experiment": "token_marginalization_cluster"})
    template = cfg["prompts"]["chat"]["templates"]["content_safety"]
    assert template["multilabel_ratio"] == 1.0
    assert cfg["datasets"]["content_safety"]["unsafe_label"] is True
