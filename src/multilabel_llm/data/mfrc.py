"""MFRC (Moral Foundations Reddit Corpus): one row per annotation in ``final_mfrc_data.csv``.

Columns: text, subreddit, bucket, annotator, annotation (comma-joined labels), confidence.
Splits come from ``splits.yaml`` ({train|dev|test: {text: id}}, the paper's file). As in the
paper's code: an annotation combining ``Non-Moral`` or ``Thin Morality`` with other labels is
dropped (the MFRC guidelines forbid it), either one alone means no moral foundation, and the
aggregate is the set of labels chosen by at least half of the annotators.
"""

from __future__ import annotations

import yaml

from multilabel_llm.data._common import (
    DatasetFormatError,
    DropLog,
    build_dataset,
    check_split_names,
    config_file,
    mean_threshold,
    read_table,
    read_text,
    require_columns,
    require_text,
)
from multilabel_llm.data.canonical import CanonicalDataset

LOADER = "mfrc"
FOUNDATIONS = ["authority", "care", "equality", "loyalty", "proportionality", "purity"]
NO_FOUNDATION = {"non-moral", "thin morality"}
REQUIRED = ["text", "annotator", "annotation"]


def read_splits(path) -> dict[str, str]:
    """text -> (split, id) from splits.yaml; ids are strings, unique across splits."""
    try:
        splits = yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        raise DatasetFormatError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(splits, dict) or not all(isinstance(v, dict) for v in splits.values()):
        raise DatasetFormatError(f"{path}: expected {{split: {{text: id}}}}")
    check_split_names(splits, str(path))
    text_to = {}
    seen_ids = {}
    for split, mapping in splits.items():
        for text, ex_id in mapping.items():
            ex_id = str(ex_id)
            if ex_id in seen_ids:
                raise DatasetFormatError(
                    f"{path}: duplicate id {ex_id!r} (splits {seen_ids[ex_id]} and {split})"
                )
            seen_ids[ex_id] = split
            text_to[str(text)] = (split, ex_id)
    return text_to


def parse_annotation(value: str, where: str) -> list[str] | None:
    """Labels of one annotation; None when the paper's code drops it (mixed with Non-Moral)."""
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    if not parts:
        raise DatasetFormatError(f"{where}: field 'annotation' is empty")
    lowered = [p.lower() for p in parts]
    unknown = [
        p
        for p, low in zip(parts, lowered, strict=True)
        if low not in FOUNDATIONS and low not in NO_FOUNDATION
    ]
    if unknown:
        raise DatasetFormatError(
            f"{where}: field 'annotation' has unknown labels {unknown}; expected "
            f"{[f.title() for f in FOUNDATIONS] + ['Non-Moral', 'Thin Morality']}"
        )
    if NO_FOUNDATION.intersection(lowered):
        return [] if len(lowered) == 1 else None
    return lowered


def load(cfg: dict, root) -> CanonicalDataset:
    name = cfg.get("name", LOADER)
    data_path = config_file(cfg, "data", root, LOADER, "final_mfrc_data.csv annotation file")
    splits_path = config_file(cfg, "splits", root, LOADER, "splits.yaml (split -> text -> id)")
    text_to = read_splits(splits_path)
    frame = read_table(data_path)
    require_columns(frame.columns, REQUIRED, str(data_path))
    drops = DropLog(name)
    examples: dict[str, dict] = {}
    for row_no, (text, annotator, annotation) in enumerate(
        zip(frame["text"], frame["annotator"], frame["annotation"], strict=True)
    ):
        where = f"{data_path}: row {row_no + 2}"
        require_text(text, where)
        if not annotator.strip():
            raise DatasetFormatError(f"{where}: field 'annotator' is empty")
        if text not in text_to:
            drops.drop(
                "annotation rows whose text is in no split of splits.yaml", f"row {row_no + 2}"
            )
            continue
        labels = parse_annotation(annotation, where)
        if labels is None:
            drops.drop(
                "annotations mixing Non-Moral/Thin Morality with other labels (as in the paper's code)",
                f"row {row_no + 2}",
            )
            continue
        split, ex_id = text_to[text]
        entry = examples.setdefault(
            ex_id,
            {"id": ex_id, "split": split, "text": text, "annotators": [], "annotator_labels": []},
        )
        if annotator in entry["annotators"]:
            drops.drop("repeated (text, annotator) rows; the first is kept", f"{ex_id}/{annotator}")
            continue
        entry["annotators"].append(annotator)
        entry["annotator_labels"].append(labels)
    records = []
    for entry in examples.values():
        entry["labels"] = mean_threshold(entry["annotator_labels"], FOUNDATIONS, 0.5)
        records.append(entry)
    notes = {"source": "MFRC", "aggregate": "labels chosen by >= half of the annotators"}
    unannotated = len({i for _, i in text_to.values()}) - len(records)
    if unannotated:
        notes["split_ids_without_annotations"] = unannotated
    notes["dropped"] = drops.report()
    order = {i: k for k, (_, i) in enumerate(text_to.values())}
    records.sort(key=lambda r: order[r["id"]])
    return build_dataset(name, records, FOUNDATIONS, True, notes, f"{LOADER}:{name}")
