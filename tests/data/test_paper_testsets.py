"""The paper's own test sets (data/paper-test-ids/) as the paper configs' ids_file test sets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from multilabel_llm.core.io import read_id_list
from multilabel_llm.data import prepare
from multilabel_llm.data._common import build_dataset
from multilabel_llm.data.testsets import build_testset, get_testset_cfg, input_files

ROOT = Path(__file__).resolve().parents[2]
IDS = ROOT / "data" / "paper-test-ids"
SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")

# id counts of the published lists (prob_distr_ids/ of the paper's code repository)
COUNTS = {
    "GoEmotions/main_test_set.txt": 231,
    "GoEmotions/big_multilabel.txt": 446,
    "MFRC/main_test_set.txt": 202,
    "MFRC/big_multilabel.txt": 80,
    "SemEval/main_test_set.txt": 185,
    "Hatexplain/main_test_set.txt": 200,
    "MSPPodcast/main_test_set.txt": 200,
}
# paper dataset config -> (list folder, its multilabel set is the published big_multilabel)
PAPER = {
    "goemotions": ("GoEmotions", True),
    "mfrc": ("MFRC", True),
    "semeval": ("SemEval", False),
    "hatexplain": ("Hatexplain", False),
    "msp_podcast": ("MSPPodcast", False),
}


def dataset_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / "dataset" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_shipped_lists_load_with_published_counts(name):
    ids = read_id_list(IDS / name)
    assert len(ids) == COUNTS[name] and len(set(ids)) == len(ids)
    assert all(i == i.strip() and " " not in i for i in ids)


@needs_shared
def test_shipped_lists_match_the_shared_copy_and_its_readme():
    readme = (SHARED / "paper-test-ids" / "README.md").read_text()
    table = dict(re.findall(r"^\| ([\w/]+\.txt) \| (\d+) \|", readme, flags=re.M))
    assert {k: int(v) for k, v in table.items()} == COUNTS
    for name in COUNTS:
        assert (IDS / name).read_bytes() == (SHARED / "paper-test-ids" / name).read_bytes()


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs_use_the_published_lists(name):
    folder, has_big = PAPER[name]
    cfg = dataset_config(name)
    main = get_testset_cfg(cfg, "main_test_set", ROOT)
    assert main["kind"] == "ids_file" and "size" not in main  # the whole list, as published
    assert Path(main["ids_file"]) == IDS / folder / "main_test_set.txt"
    assert input_files(cfg, "main_test_set", ROOT) == [
        f"data/paper-test-ids/{folder}/main_test_set.txt"
    ]
    if not cfg["multilabel"]:
        assert "multilabel" not in cfg["testsets"]
        with pytest.raises(ValueError, match="single-label"):
            get_testset_cfg(cfg, "multilabel", ROOT)
    elif has_big:
        multi = get_testset_cfg(cfg, "multilabel", ROOT)
        assert multi["kind"] == "ids_file" and "size" not in multi
        assert Path(multi["ids_file"]) == IDS / folder / "big_multilabel.txt"
    else:  # no published multi-label list: the seeded construction of §A.4
        assert get_testset_cfg(cfg, "multilabel", ROOT)["kind"] == "multilabel"


def test_boxes_keeps_the_seeded_construction():
    cfg = dataset_config("boxes")
    assert get_testset_cfg(cfg, "main_test_set")["kind"] == "main"
    assert get_testset_cfg(cfg, "multilabel")["kind"] == "multilabel"


def toy(n=20):
    records = [
        {"id": f"x{i:02d}", "split": "test" if i < n - 2 else "train", "text": "t", "labels": ["a"]}
        for i in range(n)
    ]
    return build_dataset("toy", records, ["a", "b"], True, {}, "toy")


def test_ids_file_size_is_a_seeded_subsample_in_file_order(tmp_path, caplog):
    ds = toy()
    listed = [f"x{i:02d}" for i in (17, 3, 9, 12, 0, 5, 8, 14, 1, 11)]
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(listed))  # no final newline, like some published lists
    cfg = {
        "testsets": {"paper": {"ids_file": str(path), "size": 4, "seed": 0}},
        "test_splits": ["test"],
    }

    def draw(**over):
        spec = get_testset_cfg(cfg, "paper") | over
        return build_testset(ds, "paper", spec)

    four = draw()
    assert four == draw() and len(four) == 4 and set(four) <= set(listed)
    assert four == sorted(four, key=listed.index)  # file order kept
    assert draw(seed=1) != four
    assert set(draw(size=2)) <= set(four) <= set(draw(size=7))  # nested sizes
    # the same ids listed in another order give the same subsample
    path.write_text("\n".join(reversed(listed)))
    assert set(draw()) == set(four)
    with caplog.at_level("WARNING"):
        assert draw(size=50) == list(reversed(listed))
    assert "larger than the 10 ids" in caplog.text


def test_ids_file_unknown_id_names_file_and_line(tmp_path):
    ds = toy()
    path = tmp_path / "paper_ids.txt"
    path.write_text("# the paper's ids\nx01\nx02\n\nnot-here\nx03\nalso-missing\n")
    cfg = get_testset_cfg({"testsets": {"paper": {"ids_file": str(path)}}}, "paper")
    with pytest.raises(ValueError) as err:
        build_testset(ds, "paper", cfg)
    message = str(err.value)
    assert f"{path}:5: id 'not-here' is not in dataset toy" in message
    assert "2 of 5 listed ids are missing" in message and "line 7 'also-missing'" in message


def test_ids_file_outside_splits_is_logged(tmp_path, caplog):
    path = tmp_path / "ids.txt"
    path.write_text("x01\nx19\n")  # x19 is in train
    cfg = get_testset_cfg(
        {"testsets": {"t": {"ids_file": str(path)}}, "test_splits": ["test"]}, "t"
    )
    with caplog.at_level("WARNING"):
        assert build_testset(toy(), "t", cfg) == ["x01", "x19"]
    assert "1 of 2 ids" in caplog.text and "outside splits ['test']" in caplog.text


def test_demo_hatexplain_main_test_set_is_from_the_paper_list():
    cfg = dataset_config("hatexplain_demo")
    ds = prepare(cfg, ROOT)
    paper = read_id_list(IDS / "Hatexplain" / "main_test_set.txt")
    spec = get_testset_cfg(cfg, "main_test_set", ROOT)
    assert spec["size"] == 30
    ids = build_testset(ds, "main_test_set", spec)
    assert len(ids) == 30 and set(ids) <= set(paper)
    assert set(ds.examples.set_index("id").loc[ids, "split"]) == {"test"}
    # the shipped excerpt covers the whole published list
    full = build_testset(ds, "main_test_set", {k: v for k, v in spec.items() if k != "size"})
    assert full == paper


@needs_shared
def test_paper_lists_build_on_the_real_goemotions_and_hatexplain_files():
    goemotions = {
        "name": "goemotions",
        "loader": "goemotions",
        "files": {
            "dev": SHARED / "goemotions/dev.tsv",
            "emotions": SHARED / "goemotions/emotions.txt",
        },
        "pooling": "data/goemotions/emotion_clustering.json",
        "test_splits": ["dev"],
        "testsets": dataset_config("goemotions")["testsets"],
    }
    ds = prepare(goemotions, ROOT)
    for name, folder in (("main_test_set", "main_test_set"), ("multilabel", "big_multilabel")):
        ids = build_testset(ds, name, get_testset_cfg(goemotions, name, ROOT))
        assert ids == read_id_list(IDS / "GoEmotions" / f"{folder}.txt")
    multi = build_testset(ds, "multilabel", get_testset_cfg(goemotions, "multilabel", ROOT))
    assert (ds.examples.set_index("id").loc[multi, "labels"].map(len) >= 2).all()

    hatexplain = dataset_config("hatexplain")
    hatexplain["files"] = {"test": str(SHARED / "hatexplain/hatexplain_test.json")}
    ds = prepare(hatexplain, ROOT)
    ids = build_testset(ds, "main_test_set", get_testset_cfg(hatexplain, "main_test_set", ROOT))
    assert ids == read_id_list(IDS / "Hatexplain" / "main_test_set.txt")
