"""Bring your own dataset: one CSV or JSON Lines file, one row per annotation.

Fields: ``id``, ``text``, ``labels`` (CSV: joined by ``label_sep``, default ","; JSONL: a list
or such a string; empty or "none" = no label), optional ``annotator`` and optional ``split``
(train/dev/test; missing -> ``default_split``). Rows sharing an id are one example and must share
its text and split. A row with an empty annotator (or no annotator column) carries the aggregate
labels; without one the aggregate is computed: labels chosen by at least half of the annotators
(multi-label) or the most frequent label (single-label, ties by ``tie_break``).
Config keys: files.data, multilabel, labels (ordered; default: sorted labels seen), label_sep,
default_split, tie_break. See data/README.md for an example.
"""

from __future__ import annotations

from multilabel_llm.data._common import (
    DatasetFormatError,
    DropLog,
    build_dataset,
    config_file,
    iter_jsonl,
    majority_label,
    mean_threshold,
    read_table,
    require_columns,
    require_text,
)
from multilabel_llm.data.canonical import SPLITS, CanonicalDataset

LOADER = "generic"
NONE_TOKENS = {"", "none"}


def _rows(path):
    """(where, dict) per row, from CSV or JSON Lines."""
    if path.suffix in (".jsonl", ".json"):
        for where, obj in iter_jsonl(path):
            require_columns(obj.keys(), ["id", "text", "labels"], where)
            yield where, obj
        return
    frame = read_table(path)
    require_columns(frame.columns, ["id", "text", "labels"], str(path))
    for r, rec in enumerate(frame.to_dict("records")):
        yield f"{path}: row {r + 2}", rec


def _labels(value, sep: str, where: str) -> list[str]:
    parts = value if isinstance(value, list) else str(value).split(sep)
    parts = [str(p).strip() for p in parts]
    return [p for p in parts if p.lower() not in NONE_TOKENS]


def load(cfg: dict, root) -> CanonicalDataset:
    name = cfg.get("name", LOADER)
    if "multilabel" not in cfg:
        raise ValueError(
            f"dataset config {name!r}: the generic loader needs `multilabel: true|false`"
        )
    multilabel = bool(cfg["multilabel"])
    path = config_file(cfg, "data", root, LOADER, "annotation file (CSV or JSONL)")
    sep = cfg.get("label_sep", ",")
    default_split = cfg.get("default_split", "test")
    tie_break = cfg.get("tie_break", "first")
    configured = list(cfg.get("labels") or [])
    examples: dict[str, dict] = {}
    for where, rec in _rows(path):
        ex_id = str(rec.get("id", "")).strip()
        if not ex_id:
            raise DatasetFormatError(f"{where}: field 'id' is empty")
        text = require_text(rec.get("text"), where)
        split = str(rec.get("split") or default_split).strip()
        if split not in SPLITS:
            raise DatasetFormatError(
                f"{where}: field 'split' must be one of {list(SPLITS)}, got {split!r}"
            )
        labels = _labels(rec.get("labels", ""), sep, where)
        unknown = [lab for lab in labels if configured and lab not in configured]
        if unknown:
            raise DatasetFormatError(
                f"{where}: field 'labels' has unknown labels {unknown}; labels: {configured}"
            )
        if not multilabel and len(labels) != 1:
            raise DatasetFormatError(
                f"{where}: field 'labels' must hold exactly one label (single-label dataset), got {labels}"
            )
        annotator = str(rec.get("annotator") or "").strip()
        entry = examples.setdefault(
            ex_id, {"id": ex_id, "split": split, "text": text, "annotators": [], "annotator_labels": [],
                    "aggregate": None, "where": where}
        )  # fmt: skip
        if entry["text"] != text or entry["split"] != split:
            raise DatasetFormatError(
                f"{where}: id {ex_id!r} has a different text or split than at {entry['where']}"
            )
        if not annotator:
            if entry["aggregate"] is not None:
                raise DatasetFormatError(
                    f"{where}: duplicate id {ex_id!r}: a second aggregate row (first at {entry['where']})"
                )
            entry["aggregate"] = labels
        elif annotator in entry["annotators"]:
            raise DatasetFormatError(
                f"{where}: duplicate (id, annotator) ({ex_id!r}, {annotator!r})"
            )
        else:
            entry["annotators"].append(annotator)
            entry["annotator_labels"].append(labels)
    if not examples:
        raise DatasetFormatError(f"{path}: no rows")
    label_set = configured or sorted(
        {
            lab
            for e in examples.values()
            for a in e["annotator_labels"] + [e["aggregate"] or []]
            for lab in a
        }
    )
    if not configured and label_set and set(label_set) <= {"0", "1"}:
        raise DatasetFormatError(
            f"{path}: field 'labels' holds only 0/1 values, which would make labels named "
            f"{label_set}; the generic loader expects label names there (e.g. 'joy,anger' "
            "or 'none'): turn one-column-per-label 0/1 data into names first, and list the "
            f"label set under `labels:` in the dataset config {name!r}"
        )
    drops = DropLog(name)
    records = []
    for entry in examples.values():
        if entry["aggregate"] is None:
            if multilabel:
                entry["aggregate"] = mean_threshold(entry["annotator_labels"], label_set, 0.5)
            else:
                label = majority_label(
                    [a[0] for a in entry["annotator_labels"]], tie_break, label_set
                )
                if label is None:
                    drops.drop("examples with tied annotator labels (tie_break: drop)", entry["id"])
                    continue
                entry["aggregate"] = [label]
        records.append(
            {k: entry[k] for k in ("id", "split", "text", "annotators", "annotator_labels")}
            | {"labels": entry["aggregate"]}
        )
    notes = {"source": str(cfg["files"]["data"]), "dropped": drops.report()}
    return build_dataset(name, records, label_set, multilabel, notes, f"{LOADER}:{name}")
