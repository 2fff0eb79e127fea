"""Helpers every loader shares: path resolution, clear errors, drop logging, table assembly."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from multilabel_llm.data.canonical import SPLITS, CanonicalDataset, dist_column, validate_examples

log = logging.getLogger("multilabel_llm.data")

# Where each dataset comes from: quoted in every missing-file error so the user knows what to fetch.
SOURCES = {
    "goemotions": (
        "GoEmotions (Demszky et al. 2020, Apache-2.0): train/dev/test.tsv and emotions.txt from "
        "github.com/google-research/google-research/tree/master/goemotions/data; per-rater "
        "goemotions_{1,2,3}.csv from https://storage.googleapis.com/gresearch/goemotions/data/full_dataset/"
    ),
    "mfrc": (
        "MFRC (Trager et al. 2022): final_mfrc_data.csv from the Hugging Face dataset "
        "USC-MOLA-Lab/MFRC; splits.yaml from the paper's code, configs/MFRC/splits.yaml in "
        "github.com/gchochla/LLM-multilabel-differently"
    ),
    "semeval": (
        "SemEval 2018 Task 1 E-c (Mohammad et al. 2018): English/E-c/2018-E-c-En-{train,dev,"
        "test-gold}.txt from https://competitions.codalab.org/competitions/17751 (SemEval2018-Task1-all-data)"
    ),
    "hatexplain": (
        "HateXplain (Mathew et al. 2021, MIT): Data/dataset.json and Data/post_id_divisions.json from "
        "github.com/hate-alert/HateXplain, or the JSON Lines export of the Hugging Face dataset "
        "Hate-speech-CNERG/hatexplain"
    ),
    "msp_podcast": (
        "MSP-Podcast v1.11 (Lotfian and Busso 2019; licence by request from the UT Dallas MSP lab): "
        "Labels/labels_detailed.csv and Labels/labels_consensus.csv from the release, plus a "
        "transcripts.csv (columns id,text) built from the release's Transcripts/ folder"
    ),
    "boxes": (
        "Boxes (Kim and Schuster 2023): <subset>/{train-subset,dev,test-subsample-states}-t5.jsonl and "
        "objects.txt from github.com/najoungkim/code-models-entity-tracking; or set `generate:` to "
        "build a synthetic copy with this project's seeded generator"
    ),
    "generic": "your own file in the generic format described in data/README.md",
}


class DatasetFormatError(ValueError):
    """Bad content in a dataset file (wrong columns, unknown labels, duplicate ids, empty text)."""


def resolve(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Relative paths in dataset configs resolve against the repository root."""
    path = Path(os.path.expanduser(str(path)))
    return path if path.is_absolute() else Path(root) / path


def require_file(path: str | os.PathLike, loader: str, what: str) -> Path:
    """Return ``path`` or raise FileNotFoundError naming it and where the dataset comes from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{loader}: expected the {what} at {path}, but no such file exists. "
            f"Download it once and point the dataset config there. Source: {SOURCES.get(loader, loader)}"
        )
    return path


def config_file(cfg: dict, key: str, root, loader: str, what: str, required: bool = True):
    """Look up ``files.<key>`` in a dataset config, resolve it and check that it exists."""
    files = cfg.get("files") or {}
    value = files.get(key)
    if value in (None, "", []):
        if required:
            raise ValueError(
                f"dataset config {cfg.get('name', loader)!r}: missing files.{key} ({what}). "
                f"Source: {SOURCES.get(loader, loader)}"
            )
        return None
    return require_file(resolve(value, root), loader, what)


def require_columns(columns, expected, source: str) -> None:
    missing = [c for c in expected if c not in set(columns)]
    if missing:
        raise DatasetFormatError(
            f"{source}: missing columns {missing}; found {list(columns)}; expected at least {list(expected)}"
        )


def read_text(path: str | os.PathLike) -> str:
    """A dataset file's text: UTF-8 with an optional byte-order mark (spreadsheet exports add
    one, and it would otherwise end up in the first example or label), bytes that are not
    UTF-8 named by file, line and column, an empty file named as empty."""
    path = Path(path)
    data = path.read_bytes()
    if not data.strip():
        raise DatasetFormatError(f"{path}: the file is empty ({len(data)} bytes); expected data")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DatasetFormatError(
            f"{path}:{line}: byte {data[err.start : err.start + 1]!r} at column {column} is not "
            "UTF-8; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def read_table(path: str | os.PathLike, require_rows: bool = True, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` of :func:`read_text` (all columns as text), with the parser's errors
    (a stray TAB or comma giving a row too many fields) and a header-only file named by file."""
    import csv
    import io

    path = Path(path)
    text = read_text(path)
    kwargs = {"dtype": str, "keep_default_na": False, **kwargs}
    if kwargs.get("quoting") == csv.QUOTE_NONE:
        # unquoted fields cannot hold the separator, so every row must have the header's
        # field count; pandas would instead take a row with one field too many as an index
        sep = kwargs.get("sep", ",")
        lines = text.split("\n")
        width = lines[0].rstrip("\r").count(sep)
        for lineno, line in enumerate(lines[1:], start=2):
            if line.strip() and line.rstrip("\r").count(sep) != width:
                name = "a TAB" if sep == "\t" else repr(sep)
                raise DatasetFormatError(
                    f"{path}:{lineno}: {line.count(sep) + 1} fields where the header has "
                    f"{width + 1}; {name} inside a text field splits it (replace it with a space)"
                )
    try:
        frame = pd.read_csv(io.StringIO(text), **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as err:
        raise DatasetFormatError(f"{path}: cannot parse the table: {err}") from None
    if require_rows and frame.empty:
        raise DatasetFormatError(
            f"{path}: a header ({list(frame.columns)}) but no data rows; expected examples"
        )
    return frame


def iter_jsonl(path: Path, required=()):
    """(``file:line``, object) per non-blank JSON Lines row; a malformed row or one missing a
    ``required`` field raises DatasetFormatError naming the file, line and field."""
    # split on newlines only: JSON strings may hold a raw U+2028, which splitlines() breaks at
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{where}: not a JSON object ({err})") from err
        if not isinstance(obj, dict):
            raise DatasetFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        for key in required:
            if key not in obj:
                raise DatasetFormatError(f"{where}: missing field {key!r}")
        yield where, obj


def check_unique_ids(rows) -> None:
    """Raise DatasetFormatError at the second row (``id``, ``where``) that repeats an id."""
    first_seen = {}
    for row in rows:
        if row["id"] in first_seen:
            raise DatasetFormatError(
                f"{row['where']}: duplicate id {row['id']!r} (first at {first_seen[row['id']]})"
            )
        first_seen[row["id"]] = row["where"]


def require_text(text, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DatasetFormatError(f"{where}: field 'text' is empty")
    return text


@dataclass
class DropLog:
    """Counts rows a loader drops on purpose, so a shorter table is always explained."""

    dataset: str
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def drop(self, reason: str, example: str | None = None, n: int = 1) -> None:
        self.counts[reason] += n
        if example is not None:
            self.examples.setdefault(reason, [])
            if len(self.examples[reason]) < 3:
                self.examples[reason].append(str(example))

    def report(self) -> dict:
        for reason, n in self.counts.items():
            shown = ", ".join(self.examples.get(reason, []))
            log.warning(
                "%s: dropped %d: %s%s", self.dataset, n, reason, f" (e.g. {shown})" if shown else ""
            )
        return {reason: int(n) for reason, n in self.counts.items()}


def order_labels(labs, label_order: list[str]) -> list[str]:
    index = {lab: i for i, lab in enumerate(label_order)}
    return sorted(set(labs), key=index.__getitem__)


def majority_label(annotations: list[str], tie_break: str, label_order: list[str]) -> str | None:
    """Most frequent single label. Ties: ``first`` = the tied label seen first in annotator order
    (what ``Counter.most_common`` does in the paper's code), ``label_order`` = first in label-set
    order, ``drop`` = None (the caller drops the example and logs it)."""
    counts = Counter(annotations)
    top = max(counts.values())
    tied = [lab for lab in counts if counts[lab] == top]  # Counter keeps first-seen order
    if len(tied) == 1 or tie_break == "first":
        return tied[0]
    if tie_break == "label_order":
        return order_labels(tied, label_order)[0]
    if tie_break == "drop":
        return None
    raise ValueError(f"tie_break must be one of first, label_order, drop; got {tie_break!r}")


def mean_threshold(annotator_labels: list[list[str]], label_order: list[str], threshold=0.5):
    """Aggregate of multi-label annotations: labels chosen by at least ``threshold`` of annotators."""
    n = len(annotator_labels)
    return [
        lab
        for lab in label_order
        if n and sum(lab in set(a) for a in annotator_labels) / n >= threshold
    ]


def build_dataset(
    name: str,
    records: list[dict],
    labels: list[str],
    multilabel: bool,
    notes: dict,
    source: str,
) -> CanonicalDataset:
    """Assemble records (id, split, text, labels, annotators, annotator_labels) into the table."""
    rows = []
    for rec in records:
        annotator_labels = [order_labels(a, labels) for a in rec.get("annotator_labels", [])]
        annotators = [str(a) for a in rec.get("annotators", [])]
        if len(annotators) != len(annotator_labels):
            raise AssertionError(f"{source}: example {rec['id']}: annotators and labels misaligned")
        row = {
            "id": str(rec["id"]),
            "split": rec["split"],
            "text": rec["text"],
            "labels": order_labels(rec["labels"], labels),
            "annotators": annotators,
            "annotator_labels": annotator_labels,
            "n_annotators": len(annotators),
        }
        n = len(annotators)
        for lab in labels:
            row[dist_column(lab)] = (
                sum(lab in set(a) for a in annotator_labels) / n if n else float("nan")
            )
        rows.append(row)
    columns = ["id", "split", "text", "labels", "annotators", "annotator_labels", "n_annotators"]
    frame = pd.DataFrame(rows, columns=columns + [dist_column(lab) for lab in labels])
    frame["n_annotators"] = frame["n_annotators"].astype("int64")
    for lab in labels:
        frame[dist_column(lab)] = frame[dist_column(lab)].astype("float64")
    validate_examples(frame, labels, source)
    has_annotators = bool((frame["n_annotators"] > 0).any())
    notes = dict(notes)
    notes.setdefault("n_examples", {s: int((frame["split"] == s).sum()) for s in SPLITS})
    notes.setdefault(
        "n_with_annotators",
        {s: int(((frame["split"] == s) & (frame["n_annotators"] > 0)).sum()) for s in SPLITS},
    )
    if not has_annotators:
        notes.setdefault(
            "human_distribution",
            "no per-annotator labels: h_<label> columns are NaN; only the aggregate labels exist",
        )
    return CanonicalDataset(
        name=name,
        labels=list(labels),
        multilabel=bool(multilabel),
        examples=frame,
        has_annotators=has_annotators,
        notes=notes,
    )


def check_split_names(splits: dict, source: str) -> dict:
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise ValueError(
            f"{source}: unknown split names {bad}; expected a subset of {list(SPLITS)}"
        )
    return splits
