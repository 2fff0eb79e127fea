"""Bad input: every case gives a clear error (file, line, field) or a logged count of drops."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from multilabel_llm.data import prepare
from multilabel_llm.data._common import DatasetFormatError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "goemotions"
FIX = ROOT / "tests" / "fixtures" / "datasets"
HEADER = (DATA / "goemotions_1_excerpt.csv").read_text().splitlines()[0]
EMOTIONS = (DATA / "emotions.txt").read_text().split()


def goemo_cfg(tmp_path, dev_lines, raters=None, pooling=True, train_lines=None):
    (tmp_path / "dev.tsv").write_text("".join(line + "\n" for line in dev_lines))
    files = {"dev": "dev.tsv", "emotions": str(DATA / "emotions.txt")}
    if train_lines is not None:
        (tmp_path / "train.tsv").write_text("".join(line + "\n" for line in train_lines))
        files["train"] = "train.tsv"
    if raters is not None:
        (tmp_path / "raters.csv").write_text("\n".join([HEADER] + raters) + "\n")
        files["raters"] = ["raters.csv"]
    cfg = {"name": "bad", "loader": "goemotions", "files": files}
    if pooling:
        cfg["pooling"] = str(DATA / "emotion_clustering.json")
    return cfg


def rater_row(ex_id, rater, chosen=(), unclear="False", text="t"):
    values = ["1" if e in chosen else "0" for e in EMOTIONS]
    return ",".join(
        [text, ex_id, "au", "sub", "t3_x", "t1_x", "1548381039.0", rater, unclear] + values
    )


# --- missing files -------------------------------------------------------------------------


def test_missing_file_names_path_and_source(tmp_path):
    cfg = goemo_cfg(tmp_path, ["hi\t1\tid1"])
    cfg["files"]["test"] = "resources/datasets/goemotions/test.tsv"
    with pytest.raises(FileNotFoundError) as err:
        prepare(cfg, tmp_path)
    message = str(err.value)
    assert str(tmp_path / "resources/datasets/goemotions/test.tsv") in message
    assert "google-research" in message  # where GoEmotions comes from


@pytest.mark.parametrize(
    ("loader", "files", "source"),
    [
        ("mfrc", {"data": "nope.csv", "splits": "nope.yaml"}, "USC-MOLA-Lab/MFRC"),
        ("semeval", {"train": "2018-E-c-En-train.txt"}, "codalab"),
        ("hatexplain", {"dataset": "dataset.json", "divisions": "d.json"}, "hate-alert/HateXplain"),
        (
            "msp_podcast",
            {"transcripts": "t.csv", "labels_detailed": "d.csv", "labels_consensus": "c.csv"},
            "MSP",
        ),
        ("boxes", {"objects": "objects.txt", "train": "train-subset-t5.jsonl"}, "najoungkim"),
        ("generic", {"data": "mine.csv"}, "generic format"),
    ],
)
def test_missing_file_every_loader(tmp_path, loader, files, source):
    with pytest.raises(FileNotFoundError, match=source) as err:
        prepare({"loader": loader, "multilabel": True, "files": files}, tmp_path)
    assert str(tmp_path) in str(err.value)


def test_missing_config_key(tmp_path):
    with pytest.raises(ValueError, match=r"missing files\.emotions"):
        prepare({"name": "x", "loader": "goemotions", "files": {"dev": "dev.tsv"}}, tmp_path)


def test_unknown_loader_and_multilabel_mismatch(tmp_path):
    with pytest.raises(ValueError, match="loader must be one of"):
        prepare({"name": "x", "loader": "csv"}, tmp_path)
    cfg = goemo_cfg(tmp_path, ["hi\t1\tid1"]) | {"multilabel": False}
    with pytest.raises(ValueError, match="multilabel=False"):
        prepare(cfg, tmp_path)


# --- wrong or missing columns ----------------------------------------------------------------


def test_tsv_wrong_field_count(tmp_path):
    cfg = goemo_cfg(tmp_path, ["ok\t1\tid1", "no id here\t1"])
    with pytest.raises(DatasetFormatError, match=r"dev\.tsv:2: expected 3 tab-separated fields"):
        prepare(cfg, tmp_path)


def test_rater_csv_missing_column(tmp_path):
    cfg = goemo_cfg(tmp_path, ["hi\t1\tid1"], raters=[])
    (tmp_path / "raters.csv").write_text(HEADER.replace(",joy,", ",happiness,") + "\n")
    with pytest.raises(DatasetFormatError, match=r"raters\.csv: missing columns \['joy'\]"):
        prepare(cfg, tmp_path)


def test_rater_csv_bad_value(tmp_path):
    bad = rater_row("id1", "3", ["joy"]).replace(",1,", ",7,", 1)
    cfg = goemo_cfg(tmp_path, ["hi\t1\tid1"], raters=[rater_row("id1", "2"), bad])
    with pytest.raises(DatasetFormatError, match=r"row 3 .*field 'joy': expected 0 or 1, got '7'"):
        prepare(cfg, tmp_path)


def test_semeval_missing_column(tmp_path):
    text = (FIX / "semeval/2018-E-c-En-train.txt").read_text().replace("\ttrust", "\ttrusty")
    (tmp_path / "train.txt").write_text(text)
    with pytest.raises(DatasetFormatError, match=r"missing columns \['trust'\]"):
        prepare({"loader": "semeval", "files": {"train": "train.txt"}}, tmp_path)


def test_mfrc_missing_column(tmp_path):
    text = (FIX / "mfrc/final_mfrc_data.csv").read_text().replace(",annotation,", ",labels,", 1)
    (tmp_path / "mfrc.csv").write_text(text)
    shutil.copy(FIX / "mfrc/splits.yaml", tmp_path / "splits.yaml")
    with pytest.raises(DatasetFormatError, match=r"missing columns \['annotation'\]"):
        prepare(
            {"loader": "mfrc", "files": {"data": "mfrc.csv", "splits": "splits.yaml"}}, tmp_path
        )


def test_hatexplain_csv_missing_column(tmp_path):
    (tmp_path / "train.csv").write_text('post_id,text,labels\n1_gab,hello,"1, 1, 1"\n')
    with pytest.raises(DatasetFormatError, match=r"missing columns \['annotator_ids'\]"):
        prepare({"loader": "hatexplain", "files": {"train": "train.csv"}}, tmp_path)


# --- unknown labels ------------------------------------------------------------------------


def test_tsv_unknown_label_id(tmp_path):
    cfg = goemo_cfg(tmp_path, ["ok\t1\tid1", "bad\t3,30\tid2"])
    with pytest.raises(
        DatasetFormatError, match=r"dev\.tsv:2: field 'labels' has unknown label ids \[30\]"
    ):
        prepare(cfg, tmp_path)


def test_pooling_unknown_and_uncovered_emotions(tmp_path):
    cfg = goemo_cfg(tmp_path, ["ok\t1\tid1"])
    (tmp_path / "pool.json").write_text('{"joy": ["joy", "glee"]}')
    cfg["pooling"] = "pool.json"
    with pytest.raises(
        DatasetFormatError, match=r"cluster 'joy' lists unknown emotions \['glee'\]"
    ):
        prepare(cfg, tmp_path)
    (tmp_path / "pool.json").write_text('{"joy": ["joy"]}')
    with pytest.raises(
        DatasetFormatError, match=r"emotions \['admiration', .*belong to no cluster"
    ):
        prepare(cfg, tmp_path)


def test_mfrc_unknown_label(tmp_path):
    text = (
        (FIX / "mfrc/final_mfrc_data.csv")
        .read_text()
        .replace("annotator02,Care,", "annotator02,Fairness,")
    )
    (tmp_path / "mfrc.csv").write_text(text)
    shutil.copy(FIX / "mfrc/splits.yaml", tmp_path / "splits.yaml")
    with pytest.raises(
        DatasetFormatError, match=r"row 4: field 'annotation' has unknown labels \['Fairness'\]"
    ):
        prepare(
            {"loader": "mfrc", "files": {"data": "mfrc.csv", "splits": "splits.yaml"}}, tmp_path
        )


def test_hatexplain_unknown_label(tmp_path):
    (tmp_path / "t.jsonl").write_text(
        '{"id":"a","annotators":{"label":[1,5,1],"annotator_id":[1,2,3]},"post_tokens":["x"]}\n'
    )
    with pytest.raises(DatasetFormatError, match=r"t\.jsonl:1: field 'label' must be 0 .*got 5"):
        prepare({"loader": "hatexplain", "files": {"test": "t.jsonl"}}, tmp_path)


def test_semeval_non_binary_value(tmp_path):
    text = (FIX / "semeval/2018-E-c-En-dev.txt").read_text().replace("\t0\t0\n", "\t0\t2\n")
    (tmp_path / "dev.txt").write_text(text)
    with pytest.raises(
        DatasetFormatError, match=r"dev\.txt:2: field 'trust' must be 0 or 1, got '2'"
    ):
        prepare({"loader": "semeval", "files": {"dev": "dev.txt"}}, tmp_path)


def test_generic_unknown_label(tmp_path):
    (tmp_path / "d.csv").write_text('id,text,annotator,labels\n1,hi,a,joy\n2,yo,a,"joy,glee"\n')
    cfg = {"loader": "generic", "multilabel": True, "labels": ["joy"], "files": {"data": "d.csv"}}
    with pytest.raises(
        DatasetFormatError, match=r"d\.csv: row 3: field 'labels' has unknown labels \['glee'\]"
    ):
        prepare(cfg, tmp_path)


def test_msp_unknown_label_when_labels_configured(tmp_path):
    cfg = {
        "loader": "msp_podcast",
        "labels": ["happy", "neutral", "sad"],
        "files": {
            "transcripts": str(FIX / "msp_podcast/transcripts.csv"),
            "labels_detailed": str(FIX / "msp_podcast/Labels/labels_detailed.csv"),
            "labels_consensus": str(FIX / "msp_podcast/Labels/labels_consensus.csv"),
        },
    }
    with pytest.raises(
        DatasetFormatError, match=r"labels_detailed\.csv: row 6: .*unknown label 'angry'"
    ):
        prepare(cfg, tmp_path)


# --- duplicate ids -------------------------------------------------------------------------


def test_duplicate_id_across_splits(tmp_path):
    cfg = goemo_cfg(tmp_path, ["a\t1\tid1"], train_lines=["b\t2\tid9", "c\t2\tid1"])
    with pytest.raises(
        DatasetFormatError, match=r"dev\.tsv:1: duplicate id 'id1' \(first at .*train\.tsv:2\)"
    ):
        prepare(cfg, tmp_path)


def test_semeval_duplicate_id(tmp_path):
    lines = (FIX / "semeval/2018-E-c-En-train.txt").read_text().splitlines()
    (tmp_path / "train.txt").write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(DatasetFormatError, match=r"train\.txt:5: duplicate id '2018-En-01559'"):
        prepare({"loader": "semeval", "files": {"train": "train.txt"}}, tmp_path)


def test_mfrc_duplicate_id_in_splits(tmp_path):
    (tmp_path / "splits.yaml").write_text("train:\n  a: 1\ndev:\n  b: 1\n")
    shutil.copy(FIX / "mfrc/final_mfrc_data.csv", tmp_path / "m.csv")
    with pytest.raises(DatasetFormatError, match=r"splits\.yaml: duplicate id '1'"):
        prepare({"loader": "mfrc", "files": {"data": "m.csv", "splits": "splits.yaml"}}, tmp_path)


def test_hatexplain_duplicate_id(tmp_path):
    line = '{"id":"a","annotators":{"label":[1,1,1],"annotator_id":[1,2,3]},"post_tokens":["x"]}\n'
    (tmp_path / "t.jsonl").write_text(line + line)
    with pytest.raises(DatasetFormatError, match=r"t\.jsonl:2: duplicate id 'a'"):
        prepare({"loader": "hatexplain", "files": {"test": "t.jsonl"}}, tmp_path)


def test_generic_duplicate_annotation(tmp_path):
    (tmp_path / "d.csv").write_text("id,text,annotator,labels\n1,hi,a,joy\n1,hi,a,joy\n")
    with pytest.raises(
        DatasetFormatError, match=r"row 3: duplicate \(id, annotator\) \('1', 'a'\)"
    ):
        prepare({"loader": "generic", "multilabel": True, "files": {"data": "d.csv"}}, tmp_path)


# --- empty text ----------------------------------------------------------------------------


def test_tsv_empty_text(tmp_path):
    cfg = goemo_cfg(tmp_path, ["ok\t1\tid1", "  \t1\tid2"])
    with pytest.raises(DatasetFormatError, match=r"dev\.tsv:2: field 'text' is empty"):
        prepare(cfg, tmp_path)


def test_mfrc_empty_text(tmp_path):
    text = (
        FIX / "mfrc/final_mfrc_data.csv"
    ).read_text() + ",nyc,Everyday Morality,annotator09,Care,Confident\n"
    (tmp_path / "m.csv").write_text(text)
    shutil.copy(FIX / "mfrc/splits.yaml", tmp_path / "splits.yaml")
    with pytest.raises(DatasetFormatError, match=r"m\.csv: row 14: field 'text' is empty"):
        prepare({"loader": "mfrc", "files": {"data": "m.csv", "splits": "splits.yaml"}}, tmp_path)


def test_hatexplain_empty_tokens(tmp_path):
    (tmp_path / "t.jsonl").write_text(
        '{"id":"a","annotators":{"label":[1],"annotator_id":[1]},"post_tokens":[]}\n'
    )
    with pytest.raises(
        DatasetFormatError, match=r"t\.jsonl:1 \(post_tokens\): field 'text' is empty"
    ):
        prepare({"loader": "hatexplain", "files": {"test": "t.jsonl"}}, tmp_path)


def test_generic_empty_text(tmp_path):
    (tmp_path / "d.csv").write_text('id,text,labels\n1,"",joy\n')
    with pytest.raises(DatasetFormatError, match=r"d\.csv: row 2: field 'text' is empty"):
        prepare({"loader": "generic", "multilabel": True, "files": {"data": "d.csv"}}, tmp_path)


# --- rows dropped on purpose are counted and logged ----------------------------------------


def test_goemotions_drops_are_logged(tmp_path, caplog):
    raters = [
        rater_row("id1", "1", ["joy"]),
        rater_row("id1", "1", ["anger"]),  # repeated (id, rater): first kept
        rater_row("id1", "2", [], unclear="True"),
        rater_row("zzz", "1", ["joy"]),  # not in any split
    ]
    cfg = goemo_cfg(tmp_path, ["hi\t17\tid1", "other\t27\tid2"], raters=raters)
    with caplog.at_level("WARNING"):
        ds = prepare(cfg, tmp_path)
    r = ds.examples.set_index("id").loc["id1"]
    assert r["annotators"] == ["1", "2"] and r["annotator_labels"] == [["joy"], []]
    assert ds.notes["dropped"] == {
        "rater rows whose id is in none of the split TSVs (not in the released splits)": 1,
        "repeated (id, rater_id) rows; the first is kept": 1,
    }
    assert ds.notes["examples_without_raters"] == 1  # id2
    assert "dropped 1" in caplog.text and "have no rows in the per-rater files" in caplog.text
    unclear = prepare(cfg | {"drop_unclear": True}, tmp_path)
    assert unclear.examples.set_index("id").loc["id1"]["annotators"] == ["1"]
    assert (
        unclear.notes["dropped"]["rater rows marked example_very_unclear (drop_unclear: true)"] == 1
    )
    assert len(unclear.examples) == 2  # dropping rater rows never drops examples


def test_boxes_malformed_jsonl_line_names_file_and_line(tmp_path):
    from multilabel_llm.data import prepare

    (tmp_path / "objects.txt").write_text("apple,book\n")
    (tmp_path / "train.jsonl").write_text(
        '{"sentence_masked": "Box 0 contains <extra_id_0>", "masked_content": '
        '"<extra_id_0> the apple", "sample_id": 1}\n{not json\n'
    )
    cfg = {
        "name": "boxes_bad",
        "loader": "boxes",
        "multilabel": True,
        "files": {"train": "train.jsonl", "objects": "objects.txt"},
        "test_splits": ["train"],
        "testsets": {},
    }
    with pytest.raises(ValueError, match=r"train\.jsonl:2: not a JSON object"):
        prepare(cfg, tmp_path)
