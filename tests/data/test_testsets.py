"""Test sets: uniform cells, multi-label only, user id lists; seeded and reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from multilabel_llm.data import prepare
from multilabel_llm.data._common import build_dataset
from multilabel_llm.data.testsets import build_testset, describe, get_testset_cfg

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["a", "b", "c"]


def cell_examples(n_per_cell=10, skip=()):
    """n examples per (label count × agreement) cell, in the test split, plus 5 train examples."""
    kinds = {"none": [], "single": ["a"], "multi": ["a", "b"]}
    records = []
    for kind, labels in kinds.items():
        for agree in ("agreement", "disagreement"):
            if (kind, agree) in skip:
                continue
            for i in range(n_per_cell):
                other = labels if agree == "agreement" else (["c"] if labels != ["c"] else [])
                records.append(
                    {"id": f"{kind}-{agree}-{i}", "split": "test", "text": "t", "labels": labels,
                     "annotators": ["u1", "u2"], "annotator_labels": [labels, other]}
                )  # fmt: skip
    for i in range(5):
        records.append({"id": f"train-{i}", "split": "train", "text": "t", "labels": ["a", "b"],
                        "annotators": ["u1"], "annotator_labels": [["a", "b"]]})  # fmt: skip
    return build_dataset("toy", records, LABELS, True, {}, "toy")


def test_main_test_set_is_uniform_over_six_cells():
    ds = cell_examples()
    ids = build_testset(ds, "main_test_set", {"size": 12, "seed": 0, "splits": ["test"]})
    assert len(ids) == 12 and len(set(ids)) == 12
    assert describe(ds, ids) == {
        f"{k}/{a}": 2 for k in ("none", "single", "multi") for a in ("agreement", "disagreement")
    }
    assert not any(i.startswith("train") for i in ids)


def test_seeded_and_reproducible():
    ds = cell_examples()
    cfg = {"size": 12, "seed": 0, "splits": ["test"]}
    assert build_testset(ds, "main_test_set", cfg) == build_testset(ds, "main_test_set", cfg)
    assert build_testset(ds, "main_test_set", cfg) != build_testset(
        ds, "main_test_set", cfg | {"seed": 1}
    )


def test_short_cell_gives_its_share_to_the_others(caplog):
    ds = cell_examples(n_per_cell=4, skip={("multi", "disagreement")})
    with caplog.at_level("WARNING"):
        ids = build_testset(ds, "main_test_set", {"size": 15, "seed": 0, "splits": ["test"]})
    assert len(ids) == 15
    counts = describe(ds, ids)
    assert "multi/disagreement" not in counts and sum(counts.values()) == 15
    assert counts == {"none/agreement": 3, "none/disagreement": 3, "single/agreement": 3,
                      "single/disagreement": 3, "multi/agreement": 3}  # fmt: skip
    assert "multi/disagreement" in caplog.text
    # more requested than exists: everything, with a warning
    assert (
        len(build_testset(ds, "main_test_set", {"size": 500, "seed": 0, "splits": ["test"]})) == 20
    )
    assert "wanted 500" in caplog.text


def test_multilabel_only_set():
    ds = cell_examples()
    ids = build_testset(ds, "multilabel", {"size": 7, "seed": 3, "splits": ["test"]})
    assert len(ids) == 7
    frame = ds.examples.set_index("id").loc[ids]
    assert (frame["labels"].map(len) >= 2).all()
    assert (frame["split"] == "test").all()


def test_single_label_dataset_cells_and_no_multilabel_set():
    records = [
        {"id": f"s{i}", "split": "test", "text": "t", "labels": ["x"], "annotators": ["1", "2"],
         "annotator_labels": [["x"], ["x"] if i % 2 else ["y"]]}
        for i in range(10)
    ]  # fmt: skip
    ds = build_dataset("single", records, ["x", "y"], False, {}, "single")
    ids = build_testset(ds, "main_test_set", {"size": 4, "seed": 0, "splits": ["test"]})
    assert describe(ds, ids) == {"agreement": 2, "disagreement": 2}
    with pytest.raises(ValueError, match="single-label"):
        build_testset(ds, "multilabel", {"size": 4, "splits": ["test"]})


def test_no_annotators_cells_by_label_count_only():
    records = [
        {"id": f"n{i}", "split": "dev", "text": "t", "labels": [["a"], [], ["a", "b"]][i % 3]}
        for i in range(9)
    ]
    ds = build_dataset("agg", records, LABELS, True, {}, "agg")
    ids = build_testset(ds, "main_test_set", {"size": 6, "seed": 0, "splits": ["dev"]})
    assert describe(ds, ids) == {"none": 2, "single": 2, "multi": 2}


def test_user_supplied_id_list(tmp_path):
    ds = cell_examples()
    path = tmp_path / "mine.txt"
    path.write_text("# my ids\nmulti-agreement-3\nnone-agreement-0\n\n")
    cfg = get_testset_cfg({"testsets": {"mine": {"ids_file": str(path)}}}, "mine")
    assert cfg["kind"] == "ids_file"
    assert build_testset(ds, "mine", cfg) == ["multi-agreement-3", "none-agreement-0"]
    path.write_text("multi-agreement-3\nnot-an-id\n")
    with pytest.raises(
        ValueError, match=r"mine\.txt:2: id 'not-an-id' is not in dataset toy; 1 of 2 listed"
    ):
        build_testset(ds, "mine", cfg)
    path.write_text("multi-agreement-3\n# again\nmulti-agreement-3\n")
    with pytest.raises(
        ValueError, match=r"mine\.txt:3: duplicate id 'multi-agreement-3' \(first at line 1\)"
    ):
        build_testset(ds, "mine", cfg)


def test_testset_cfg_defaults_and_unknown_name():
    dataset_cfg = {
        "name": "d",
        "test_splits": ["dev", "test"],
        "testsets": {"main_test_set": {"size": 50}},
    }
    cfg = get_testset_cfg(dataset_cfg, "main_test_set")
    assert cfg == {"size": 50, "seed": 0, "splits": ["dev", "test"], "kind": "main"}
    assert get_testset_cfg(dataset_cfg, "multilabel")["kind"] == "multilabel"
    with pytest.raises(ValueError, match="defines no test set 'other'"):
        get_testset_cfg(dataset_cfg, "other")
    # an id list is taken whole unless it sets a size
    listed = {"testsets": {"paper": {"ids_file": "ids.txt"}}, "test_splits": ["dev"]}
    assert get_testset_cfg(listed, "paper", "/r") == {
        "ids_file": str(Path("/r/ids.txt")), "seed": 0, "splits": ["dev"], "kind": "ids_file"
    }  # fmt: skip
    # a single-label dataset has no multi-label-only set, defined or not
    with pytest.raises(ValueError, match="single-label"):
        get_testset_cfg({"name": "s", "multilabel": False, "testsets": {}}, "multilabel")


def test_goemotions_demo_testsets():
    dataset_cfg = yaml.safe_load((ROOT / "config/dataset/goemotions_demo.yaml").read_text())
    ds = prepare(dataset_cfg, ROOT)
    main = build_testset(ds, "main_test_set", get_testset_cfg(dataset_cfg, "main_test_set"))
    assert len(main) == 30
    assert set(ds.examples.set_index("id").loc[main, "split"]) == {"dev"}
    counts = describe(ds, main)
    assert counts["none/agreement"] == counts["single/disagreement"] == 6
    multi = build_testset(ds, "multilabel", get_testset_cfg(dataset_cfg, "multilabel"))
    # size 20 asks for more than the excerpt has: every multi-label dev example (9) is taken
    assert len(multi) == 9


def test_sample_kind_is_a_seeded_uniform_subset_of_its_splits():
    ds = cell_examples()
    cfg = {"kind": "sample", "size": 5, "seed": 3, "splits": ["test"]}
    first = build_testset(ds, "probe_train", cfg)
    assert first == build_testset(ds, "probe_train", cfg)
    assert len(first) == 5
    assert set(first) <= set(ds.split("test")["id"])
    assert first != build_testset(ds, "probe_train", {**cfg, "seed": 4})
