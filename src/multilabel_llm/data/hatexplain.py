"""HateXplain: single-label (hate / normal / offensive), three annotators per post.

Accepted files (per split or as the original pair):
  * original release: ``files.dataset`` = Data/dataset.json ({post_id: {annotators: [{label,
    annotator_id, target}], post_tokens, ...}}) + ``files.divisions`` = post_id_divisions.json
    ({train, val, test}: [post_id]);
  * ``files.{train,dev,test}`` as ``.json``/``.jsonl`` = the Hugging Face JSON Lines export
    (id, annotators {label [0=hatespeech, 1=normal, 2=offensive], annotator_id}, post_tokens),
    or ``.csv`` = post_id, text, labels ("0, 2, 2"), annotator_ids ("203, 204, 233").
Text = the post tokens joined by spaces. Aggregate = the most frequent annotator label; ties
(all three differ) follow ``tie_break`` (default ``first``: the first annotator's label among the
tied, which is what the paper's ``Counter.most_common`` does; ``drop`` drops and logs them;
``label_order`` takes the first in label order).
"""

from __future__ import annotations

import json
from pathlib import Path

from multilabel_llm.data._common import (
    DatasetFormatError,
    DropLog,
    build_dataset,
    config_file,
    iter_jsonl,
    majority_label,
    read_table,
    read_text,
    require_columns,
    require_text,
)
from multilabel_llm.data.canonical import SPLITS, CanonicalDataset

LOADER = "hatexplain"
LABELS = ["hate", "normal", "offensive"]
CODES = {0: "hate", 1: "normal", 2: "offensive"}
NAMES = {"hatespeech": "hate", "hate": "hate", "normal": "normal", "offensive": "offensive"}
DIVISIONS = {"train": "train", "val": "dev", "validation": "dev", "dev": "dev", "test": "test"}


def _code(value, where: str) -> str:
    try:
        return CODES[int(value)]
    except (KeyError, ValueError, TypeError):
        raise DatasetFormatError(
            f"{where}: field 'label' must be 0 (hatespeech), 1 (normal) or 2 (offensive), got {value!r}"
        ) from None


def _name(value, where: str) -> str:
    if value not in NAMES:
        raise DatasetFormatError(
            f"{where}: field 'label' must be one of {sorted(NAMES)}, got {value!r}"
        )
    return NAMES[value]


def read_jsonl(path: Path, split: str) -> list[dict]:
    posts = []
    for where, obj in iter_jsonl(path, ("id", "annotators", "post_tokens")):
        ann = obj["annotators"]
        if not isinstance(ann, dict) or "label" not in ann or "annotator_id" not in ann:
            raise DatasetFormatError(
                f"{where}: field 'annotators' needs 'label' and 'annotator_id' lists"
            )
        labels = [_code(v, where) for v in ann["label"]]
        if len(labels) != len(ann["annotator_id"]):
            raise DatasetFormatError(
                f"{where}: annotators.label and annotators.annotator_id differ in length"
            )
        text = " ".join(obj["post_tokens"])
        posts.append(
            {"id": str(obj["id"]), "split": split, "text": require_text(text, where + " (post_tokens)"),
             "annotators": [str(a) for a in ann["annotator_id"]], "votes": labels, "where": where}
        )  # fmt: skip
    return posts


def read_csv(path: Path, split: str) -> list[dict]:
    frame = read_table(path)
    require_columns(frame.columns, ["post_id", "text", "labels", "annotator_ids"], str(path))
    posts = []
    for r, rec in enumerate(frame.to_dict("records")):
        where = f"{path}: row {r + 2}"
        require_text(rec["text"], where)
        votes = [_code(v.strip(), where) for v in rec["labels"].split(",") if v.strip()]
        annotators = [a.strip() for a in rec["annotator_ids"].split(",") if a.strip()]
        if not votes or len(votes) != len(annotators):
            raise DatasetFormatError(
                f"{where}: fields 'labels' ({rec['labels']!r}) and 'annotator_ids' "
                f"({rec['annotator_ids']!r}) must list one label per annotator"
            )
        posts.append(
            {"id": rec["post_id"], "split": split, "text": rec["text"], "annotators": annotators,
             "votes": votes, "where": where}
        )  # fmt: skip
    return posts


def read_original(dataset_path: Path, divisions_path: Path) -> list[dict]:
    data = json.loads(read_text(dataset_path))
    divisions = json.loads(read_text(divisions_path))
    unknown = [k for k in divisions if k not in DIVISIONS]
    if unknown:
        raise DatasetFormatError(
            f"{divisions_path}: unknown splits {unknown}; expected train/val/test"
        )
    posts = []
    for division, ids in divisions.items():
        for post_id in ids:
            where = f"{dataset_path}: post {post_id}"
            if post_id not in data:
                raise DatasetFormatError(
                    f"{divisions_path}: post {post_id!r} is not in {dataset_path}"
                )
            post = data[post_id]
            annotators = post.get("annotators")
            if not isinstance(annotators, list) or not annotators:
                raise DatasetFormatError(f"{where}: field 'annotators' must be a non-empty list")
            text = " ".join(post.get("post_tokens") or [])
            posts.append(
                {"id": str(post_id), "split": DIVISIONS[division], "text": require_text(text, where + " (post_tokens)"),
                 "annotators": [str(a.get("annotator_id")) for a in annotators],
                 "votes": [_name(a.get("label"), where) for a in annotators], "where": where}
            )  # fmt: skip
    return posts


def load(cfg: dict, root) -> CanonicalDataset:
    name = cfg.get("name", LOADER)
    files = cfg.get("files") or {}
    tie_break = cfg.get("tie_break", "first")
    if files.get("dataset"):
        posts = read_original(
            config_file(cfg, "dataset", root, LOADER, "dataset.json"),
            config_file(cfg, "divisions", root, LOADER, "post_id_divisions.json"),
        )
    else:
        posts = []
        for split in SPLITS:
            if not files.get(split):
                continue
            path = config_file(cfg, split, root, LOADER, f"{split} split file")
            posts.extend(
                read_csv(path, split) if path.suffix == ".csv" else read_jsonl(path, split)
            )
        if not posts:
            raise ValueError(
                f"dataset config {name!r}: set files.dataset + files.divisions, or files.train/dev/test"
            )
    seen = {}
    drops = DropLog(name)
    records = []
    for post in posts:
        if post["id"] in seen:
            raise DatasetFormatError(
                f"{post['where']}: duplicate id {post['id']!r} (first at {seen[post['id']]})"
            )
        seen[post["id"]] = post["where"]
        label = majority_label(post["votes"], tie_break, LABELS)
        if label is None:
            drops.drop("posts whose annotators all disagree (tie_break: drop)", post["id"])
            continue
        records.append(
            {"id": post["id"], "split": post["split"], "text": post["text"], "labels": [label],
             "annotators": post["annotators"], "annotator_labels": [[v] for v in post["votes"]]}
        )  # fmt: skip
    notes = {
        "source": "HateXplain",
        "aggregate": f"majority label, ties: {tie_break}",
        "dropped": drops.report(),
    }
    return build_dataset(name, records, LABELS, False, notes, f"{LOADER}:{name}")
