"""The canonical per-dataset table every loader writes and every later stage reads.

``examples.parquet`` columns:
  id (str, unique), split ("train" | "dev" | "test"), text (str),
  labels (list[str]: aggregate gold labels in label-set order; [] means none),
  annotators (list[str]), annotator_labels (list[list[str]], aligned with annotators),
  n_annotators (int), and ``h_<label>`` (float) per label: the human distribution of
  paper eq. 1 (share of annotators choosing the label; NaN when no annotators).
``meta.json``: name, labels (ordered), multilabel, has_annotators, plus loader notes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from multilabel_llm.core.io import read_json, write_json, write_parquet

SPLITS = ("train", "dev", "test")
BASE_COLUMNS = ["id", "split", "text", "labels", "annotators", "annotator_labels", "n_annotators"]


def dist_column(label: str) -> str:
    return f"h_{label}"


@dataclass
class CanonicalDataset:
    name: str
    labels: list[str]
    multilabel: bool
    examples: pd.DataFrame
    has_annotators: bool = True
    notes: dict = field(default_factory=dict)

    def human_distribution(self, ids=None) -> pd.DataFrame:
        """id-indexed frame, one column per label, of paper eq. 1."""
        frame = self.examples.set_index("id")
        if ids is not None:
            frame = frame.loc[list(ids)]
        out = frame[[dist_column(lab) for lab in self.labels]].copy()
        out.columns = list(self.labels)
        return out

    def gold_matrix(self, ids=None) -> pd.DataFrame:
        """id-indexed 0/1 frame of the aggregate labels."""
        frame = self.examples.set_index("id")
        if ids is not None:
            frame = frame.loc[list(ids)]
        rows = [[int(lab in set(labs)) for lab in self.labels] for labs in frame["labels"]]
        return pd.DataFrame(rows, index=frame.index, columns=list(self.labels))

    def split(self, name: str) -> pd.DataFrame:
        return self.examples[self.examples["split"] == name]

    def meta(self) -> dict:
        return {
            "name": self.name,
            "labels": list(self.labels),
            "multilabel": bool(self.multilabel),
            "has_annotators": bool(self.has_annotators),
            "notes": self.notes,
        }


def human_distribution_from_annotations(annotator_labels, labels) -> dict[str, float]:
    """Paper eq. 1: for each label, the share of annotators whose label set contains it."""
    n = len(annotator_labels)
    if n == 0:
        return {lab: float("nan") for lab in labels}
    return {lab: sum(lab in set(a) for a in annotator_labels) / n for lab in labels}


def validate_examples(examples: pd.DataFrame, labels: list[str], source: str) -> None:
    """Raise ValueError naming ``source`` when the table breaks the contract."""
    missing = [c for c in BASE_COLUMNS if c not in examples.columns]
    missing += [dist_column(lab) for lab in labels if dist_column(lab) not in examples.columns]
    if missing:
        raise ValueError(f"{source}: canonical table lacks columns {missing}")
    dup = examples["id"][examples["id"].duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"{source}: duplicate example ids {dup[:5]}")
    bad_split = sorted(set(examples["split"]) - set(SPLITS))
    if bad_split:
        raise ValueError(f"{source}: unknown splits {bad_split}; expected one of {list(SPLITS)}")
    known = set(labels)
    for row_id, labs in zip(examples["id"], examples["labels"], strict=True):
        unknown = set(labs) - known
        if unknown:
            raise ValueError(f"{source}: example {row_id} has unknown labels {sorted(unknown)}")


def save_canonical(dataset: CanonicalDataset, out_dir: str | os.PathLike) -> None:
    validate_examples(dataset.examples, dataset.labels, dataset.name)
    out_dir = Path(out_dir)
    frame = dataset.examples.copy()
    frame["labels"] = frame["labels"].map(list)
    frame["annotators"] = frame["annotators"].map(lambda a: [str(x) for x in a])
    frame["annotator_labels"] = frame["annotator_labels"].map(lambda a: [list(x) for x in a])
    write_parquet(out_dir / "examples.parquet", frame)
    write_json(out_dir / "meta.json", dataset.meta())


def _to_list(value):
    if isinstance(value, np.ndarray):
        return [_to_list(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_to_list(v) for v in value]
    return value


def load_canonical(out_dir: str | os.PathLike) -> CanonicalDataset:
    out_dir = Path(out_dir)
    meta = read_json(out_dir / "meta.json")
    frame = pd.read_parquet(out_dir / "examples.parquet")
    for column in ("labels", "annotators", "annotator_labels"):
        frame[column] = frame[column].map(_to_list)
    frame["id"] = frame["id"].astype(str)
    return CanonicalDataset(
        name=meta["name"],
        labels=list(meta["labels"]),
        multilabel=bool(meta["multilabel"]),
        examples=frame,
        has_annotators=bool(meta.get("has_annotators", True)),
        notes=meta.get("notes", {}),
    )
