"""Table 1: annotator counts, Fleiss' kappa and label-count shares, checked against hand values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from multilabel_llm.data import prepare
from multilabel_llm.data._common import build_dataset
from multilabel_llm.data.dataset_stats import fleiss_kappa, table1, to_markdown, write_table1

ROOT = Path(__file__).resolve().parents[2]


def toy_multilabel():
    records = [
        {"id": "e1", "split": "test", "text": "t", "labels": ["a"], "annotators": ["u1", "u2"],
         "annotator_labels": [["a"], ["a"]]},
        {"id": "e2", "split": "test", "text": "t", "labels": ["a", "b"], "annotators": ["u1", "u3"],
         "annotator_labels": [["a", "b"], ["b"]]},
        {"id": "e3", "split": "dev", "text": "t", "labels": [], "annotators": ["u2", "u3"],
         "annotator_labels": [[], []]},
        {"id": "e4", "split": "train", "text": "t", "labels": ["a", "b", "c"], "annotators": ["u4"],
         "annotator_labels": [["a", "b", "c"]]},
    ]  # fmt: skip
    return build_dataset("toy", records, ["a", "b", "c"], True, {}, "toy")


def test_fleiss_kappa_by_hand():
    # P_i = 1, 1, 0 -> 2/3; p = (.5, .5) -> P_e = .5; kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [1, 1]])) == pytest.approx(1 / 3)
    # variable raters: P = 1, 0; p = (4/5, 1/5) -> P_e = .68; kappa = (.5 - .68) / .32
    assert fleiss_kappa(np.array([[3, 0], [1, 1]])) == pytest.approx(-0.5625)
    # items with fewer than two raters are ignored; none left -> NaN
    assert math.isnan(fleiss_kappa(np.array([[1, 0], [0, 1]])))
    assert math.isnan(fleiss_kappa(np.array([[2, 0], [3, 0]])))  # P_e = 1


def test_table1_multilabel_by_hand():
    row = table1([toy_multilabel()]).iloc[0]
    assert row["dataset"] == "toy" and row["n_examples"] == 4
    assert row["annotators"] == 4
    assert row["annotators_per_example"] == pytest.approx(7 / 4)
    # label a: kappa 1/3; label b: P̄ = 1, P_e = 5/9 -> 1; label c: never chosen -> left out
    assert row["kappa"] == pytest.approx((1 / 3 + 1) / 2)
    assert [row[c] for c in ("labels_0", "labels_1", "labels_2", "labels_3plus")] == [0.25] * 4


def test_table1_single_label_and_no_annotators():
    single = build_dataset(
        "single",
        [
            {
                "id": "1",
                "split": "test",
                "text": "t",
                "labels": ["x"],
                "annotators": ["p", "q", "r"],
                "annotator_labels": [["x"], ["x"], ["y"]],
            },
            {
                "id": "2",
                "split": "test",
                "text": "t",
                "labels": ["y"],
                "annotators": ["p", "q"],
                "annotator_labels": [["y"], ["y"]],
            },
        ],  # fmt: skip
        ["x", "y"],
        False,
        {},
        "single",
    )
    aggregate = build_dataset(
        "agg",
        [{"id": "1", "split": "dev", "text": "t", "labels": ["x", "y"]}],
        ["x", "y"],
        True,
        {},
        "agg",
    )
    table = table1([single, aggregate])
    # P = 1/3, 1 -> 2/3; p = (2/5, 3/5) -> P_e = .52
    assert table.iloc[0]["kappa"] == pytest.approx((2 / 3 - 0.52) / 0.48)
    assert table.iloc[0]["annotators"] == 3
    assert pd.isna(table.iloc[1]["annotators"]) and pd.isna(table.iloc[1]["kappa"])
    assert table.iloc[1]["labels_2"] == 1.0


def test_markdown_and_csv(tmp_path):
    table = table1(
        [
            toy_multilabel(),
            build_dataset(
                "agg",
                [{"id": "1", "split": "dev", "text": "t", "labels": ["x"]}],
                ["x"],
                True,
                {},
                "agg",
            ),
        ]
    )
    md = to_markdown(table)
    assert "| toy | 4 (1.75) | 0.67 | 25% | 25% | 25% | 25% |" in md
    assert "| agg | – (–) | – | 0% | 100% | 0% | 0% |" in md
    write_table1(table, tmp_path / "t.csv", tmp_path / "t.md")
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["dataset"].tolist() == ["toy", "agg"]
    assert (tmp_path / "t.md").read_text() == md


def test_table1_goemotions_demo():
    ds = prepare(yaml.safe_load((ROOT / "config/dataset/goemotions_demo.yaml").read_text()), ROOT)
    row = table1([ds]).iloc[0]
    assert row["n_examples"] == 450
    assert row["labels_0"] + row["labels_1"] + row["labels_2"] + row[
        "labels_3plus"
    ] == pytest.approx(1.0)
    assert row["labels_0"] == pytest.approx(143 / 450)  # 93 train + 31 dev + 19 test with no label
    assert -1 <= row["kappa"] <= 1
