"""GoEmotions: aggregate labels from the split TSVs, per-rater labels from goemotions_{1,2,3}.csv.

``neutral`` means "no emotion" and is dropped, so a neutral-only example has no labels (as in the
paper's code). An optional ``emotion_clustering.json`` (cluster -> member emotions, the format of
the reference README) pools the 27 emotions into clusters: a rater (or the aggregate) has a
cluster when it chose any member. Label order = the JSON key order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from multilabel_llm.data._common import (
    DatasetFormatError,
    DropLog,
    build_dataset,
    check_unique_ids,
    config_file,
    log,
    read_table,
    read_text,
    require_columns,
    require_file,
    require_text,
    resolve,
)
from multilabel_llm.data.canonical import SPLITS, CanonicalDataset

LOADER = "goemotions"
NEUTRAL = "neutral"
RAW_META_COLUMNS = ["id", "rater_id", "example_very_unclear"]


def read_emotions(path: Path) -> list[str]:
    emotions = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if len(set(emotions)) != len(emotions):
        raise DatasetFormatError(f"{path}: duplicate emotion names")
    return emotions


def read_pooling(path: Path, emotions: list[str]) -> dict[str, list[str]]:
    """Read cluster -> members; every member must be a known emotion and every emotion covered."""
    try:
        clustering = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(clustering, dict) or not all(
        isinstance(v, list) and all(isinstance(m, str) for m in v) for v in clustering.values()
    ):
        raise DatasetFormatError(
            f"{path}: expected a JSON object mapping cluster -> list of emotions"
        )
    known = set(emotions)
    for cluster, members in clustering.items():
        unknown = [m for m in members if m not in known]
        if unknown:
            raise DatasetFormatError(
                f"{path}: cluster {cluster!r} lists unknown emotions {unknown}; known: {emotions}"
            )
    covered = {m for members in clustering.values() for m in members}
    uncovered = [e for e in emotions if e != NEUTRAL and e not in covered]
    if uncovered:
        raise DatasetFormatError(f"{path}: emotions {uncovered} belong to no cluster")
    return clustering


def pool(emotion_set, clustering: dict[str, list[str]] | None) -> list[str]:
    """Union of members per cluster (the paper's clamp(sum, 0, 1))."""
    if clustering is None:
        return list(emotion_set)
    chosen = set(emotion_set)
    return [cluster for cluster, members in clustering.items() if chosen.intersection(members)]


def read_split_tsv(path: Path, split: str, emotions: list[str]) -> list[dict]:
    """``text \\t comma-separated emotion indices \\t id`` per line, no header."""
    rows = []
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        where = f"{path}:{lineno}"
        if len(fields) != 3:
            raise DatasetFormatError(
                f"{where}: expected 3 tab-separated fields (text, label ids, id), got {len(fields)}"
            )
        text, label_field, ex_id = fields
        require_text(text, where)
        if not ex_id.strip():
            raise DatasetFormatError(f"{where}: field 'id' is empty")
        try:
            indices = [int(x) for x in label_field.split(",")]
        except ValueError:
            raise DatasetFormatError(
                f"{where}: field 'labels' must be comma-separated integers, got {label_field!r}"
            ) from None
        bad = [i for i in indices if not 0 <= i < len(emotions)]
        if bad:
            raise DatasetFormatError(
                f"{where}: field 'labels' has unknown label ids {bad} (emotions.txt has {len(emotions)})"
            )
        names = [emotions[i] for i in indices if emotions[i] != NEUTRAL]
        rows.append(
            {
                "id": ex_id.strip(),
                "split": split,
                "text": text,
                "emotions": names,
                "where": where,
            }
        )
    return rows


def read_raters(
    paths: list[Path], emotions: list[str], wanted_ids: set, drops: DropLog, drop_unclear: bool
):
    """Return {id: [(rater_id, [emotions...]), ...]} from the raw per-rater CSVs."""
    per_id: dict[str, list[tuple[str, list[str]]]] = {}
    seen = set()
    for path in paths:
        frame = read_table(path, require_rows=False)  # a rater file may hold none
        require_columns(frame.columns, RAW_META_COLUMNS + emotions, str(path))
        values = frame[emotions].to_numpy()
        bad = ~np.isin(values, ["0", "1"])
        if bad.any():
            r, c = map(int, np.argwhere(bad)[0])
            raise DatasetFormatError(
                f"{path}: row {r + 2} (line of a one-line record), field {emotions[c]!r}: "
                f"expected 0 or 1, got {values[r, c]!r}"
            )
        chosen = values == "1"
        keep_cols = [j for j, e in enumerate(emotions) if e != NEUTRAL]
        ids = frame["id"].tolist()
        raters = frame["rater_id"].tolist()
        unclear = frame["example_very_unclear"].str.lower().isin(["true", "1"]).tolist()
        for r in tqdm(range(len(frame)), desc=f"raters {path.name}", disable=len(frame) < 50_000):
            ex_id = ids[r]
            if ex_id not in wanted_ids:
                drops.drop(
                    "rater rows whose id is in none of the split TSVs (not in the released splits)",
                    ex_id,
                )
                continue
            if drop_unclear and unclear[r]:
                drops.drop("rater rows marked example_very_unclear (drop_unclear: true)", ex_id)
                continue
            if (ex_id, raters[r]) in seen:
                drops.drop(
                    "repeated (id, rater_id) rows; the first is kept", f"{ex_id}/{raters[r]}"
                )
                continue
            seen.add((ex_id, raters[r]))
            labels = [emotions[j] for j in keep_cols if chosen[r, j]]
            per_id.setdefault(ex_id, []).append((raters[r], labels))
    return per_id


def load(cfg: dict, root) -> CanonicalDataset:
    name = cfg.get("name", LOADER)
    emotions_path = config_file(cfg, "emotions", root, LOADER, "emotions.txt label list")
    emotions = read_emotions(emotions_path)
    pooling_value = cfg.get("pooling") or (cfg.get("files") or {}).get("pooling")
    clustering = None
    if pooling_value:
        pooling_path = require_file(resolve(pooling_value, root), LOADER, "emotion clustering JSON")
        clustering = read_pooling(pooling_path, emotions)
    labels = list(clustering) if clustering else [e for e in emotions if e != NEUTRAL]

    files = cfg.get("files") or {}
    split_rows = []
    for split in SPLITS:
        if files.get(split):
            path = config_file(cfg, split, root, LOADER, f"{split} split TSV")
            split_rows.extend(read_split_tsv(path, split, emotions))
    if not split_rows:
        raise ValueError(f"dataset config {name!r}: set at least one of files.train/dev/test")
    check_unique_ids(split_rows)

    drops = DropLog(name)
    rater_files = files.get("raters") or []
    if isinstance(rater_files, str):
        rater_files = [rater_files]
    rater_paths = [require_file(resolve(p, root), LOADER, "per-rater CSV") for p in rater_files]
    notes = {"source": "GoEmotions", "pooling": str(pooling_value) if pooling_value else None}
    if rater_paths:
        per_id = read_raters(
            rater_paths,
            emotions,
            {row["id"] for row in split_rows},
            drops,
            bool(cfg.get("drop_unclear", False)),
        )
        notes["raters"] = [str(p) for p in rater_files]
    else:
        per_id = {}
        message = (
            "no per-rater files (files.raters: goemotions_{1,2,3}.csv) configured: aggregate labels "
            "only, no annotators, human distribution (h_*) is NaN"
        )
        log.warning("%s: %s", name, message)
        notes["raters"] = message

    records = []
    for row in split_rows:
        ratings = per_id.get(row["id"], [])
        records.append(
            {
                "id": row["id"],
                "split": row["split"],
                "text": row["text"],
                "labels": pool(row["emotions"], clustering),
                "annotators": [r for r, _ in ratings],
                "annotator_labels": [pool(e, clustering) for _, e in ratings],
            }
        )
    if rater_paths:
        missing = sum(1 for rec in records if not rec["annotators"])
        if missing:
            log.warning(
                "%s: %d of %d examples have no rows in the per-rater files (partial rater files?); "
                "their h_* columns are NaN",
                name,
                missing,
                len(records),
            )
            notes["examples_without_raters"] = missing
    notes["dropped"] = drops.report()
    return build_dataset(name, records, labels, True, notes, f"{LOADER}:{name}")
