"""SemEval 2018 Task 1 E-c (English): ``ID, Tweet`` + one 0/1 column per emotion, tab-separated.

Only aggregate labels are public, so there are no annotators and the human distribution is NaN.
Labels are the emotion columns in alphabetical order (``pessimism`` as the files spell it).
"""

from __future__ import annotations

import csv

from multilabel_llm.data._common import (
    DatasetFormatError,
    build_dataset,
    check_unique_ids,
    config_file,
    read_table,
    require_columns,
    require_text,
)
from multilabel_llm.data.canonical import SPLITS, CanonicalDataset

LOADER = "semeval"
EMOTIONS = [
    "anger", "anticipation", "disgust", "fear", "joy", "love",
    "optimism", "pessimism", "sadness", "surprise", "trust",
]  # fmt: skip


def read_split(path, split: str) -> list[dict]:
    # QUOTE_NONE: tweets contain quotes that are part of the text
    frame = read_table(path, sep="\t", quoting=csv.QUOTE_NONE)
    require_columns(frame.columns, ["ID", "Tweet"] + EMOTIONS, str(path))
    extra = [c for c in frame.columns if c not in ["ID", "Tweet"] + EMOTIONS]
    if extra:
        raise DatasetFormatError(f"{path}: unknown label columns {extra}; expected {EMOTIONS}")
    rows = []
    for r, record in enumerate(frame.to_dict("records")):
        where = f"{path}:{r + 2}"
        require_text(record["Tweet"], where)
        if not record["ID"].strip():
            raise DatasetFormatError(f"{where}: field 'ID' is empty")
        labels = []
        for emotion in EMOTIONS:
            value = record[emotion].strip()
            if value not in ("0", "1"):
                raise DatasetFormatError(
                    f"{where}: field {emotion!r} must be 0 or 1, got {value!r}"
                )
            if value == "1":
                labels.append(emotion)
        rows.append(
            {
                "id": record["ID"].strip(),
                "split": split,
                "text": record["Tweet"],
                "labels": labels,
                "where": where,
            }
        )
    return rows


def load(cfg: dict, root) -> CanonicalDataset:
    name = cfg.get("name", LOADER)
    files = cfg.get("files") or {}
    rows = []
    for split in SPLITS:
        if files.get(split):
            rows.extend(
                read_split(config_file(cfg, split, root, LOADER, f"{split} E-c file"), split)
            )
    if not rows:
        raise ValueError(f"dataset config {name!r}: set at least one of files.train/dev/test")
    check_unique_ids(rows)
    notes = {"source": "SemEval 2018 Task 1 E-c (English)"}
    return build_dataset(name, rows, EMOTIONS, True, notes, f"{LOADER}:{name}")
