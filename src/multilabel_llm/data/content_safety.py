"""Content-safety benchmark in the format of *Token-Level Marginalization for Multi-Label LLM
Classifiers* (Praharaj & Kasundra 2025): JSON Lines, one unsafe query per line::

    {"llama_guard_3_categories": ["S1", "S10"], "unsafe_query": "..."}

The categories are the 14 hazard codes of the Llama Guard 3 policy (S1 Violent Crimes ...
S14 Code Interpreter Abuse). Aggregate labels only (no per-annotator rows), so the alignment
metrics score against the 0/1 labels. The file carries no licence: users download it
themselves and point ``files.data`` at it; nothing of it ships here.

Config keys: ``files.data``; ``labels_as`` (``code``: S1..S14, what Llama Guard writes, the
default; ``name``: the policy's category names, for models prompted with plain words);
``categories`` (optional subset of codes, in prompt order; default all 14);
``unsafe_label`` (default false; true: the pseudo-label ``unsafe`` first in the label set and
on every row, as the second paper scores Llama Guard's first answer line);
``train_fraction`` and ``seed`` (the file has no splits: a seeded share of the rows becomes
the ``train`` split the in-context demonstrations come from, the rest ``default_split``).
A row may carry an ``id``; otherwise its 1-based row number is the id.
"""

from __future__ import annotations

import numpy as np

from multilabel_llm.data._common import (
    DatasetFormatError,
    DropLog,
    build_dataset,
    config_file,
    iter_jsonl,
)
from multilabel_llm.data.canonical import SPLITS, CanonicalDataset

LOADER = "content_safety"
TEXT_FIELD = "unsafe_query"
LABEL_FIELD = "llama_guard_3_categories"
# The Llama Guard 3 hazard taxonomy (MLCommons), code -> category name
LLAMA_GUARD_3_CATEGORIES = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}
LABELS_AS = ("code", "name")
UNSAFE_LABEL = "unsafe"  # the pseudo-label of ``unsafe_label: true``
SOURCE = (
    "the content-safety benchmark of Praharaj & Kasundra 2025: datasets/content_moderation_lm3"
    ".jsonl from github.com/the-fenrir/MarginalProb4Classification (no licence: download it "
    'yourself; rows look like {"llama_guard_3_categories": ["S1"], "unsafe_query": "..."})'
)


def _settings(cfg: dict, name: str) -> tuple[list[str], str, float, int, str]:
    labels_as = cfg.get("labels_as", "code")
    if labels_as not in LABELS_AS:
        raise ValueError(
            f"dataset config {name!r}: labels_as must be one of {LABELS_AS}, got {labels_as!r}"
        )
    codes = list(cfg.get("categories") or LLAMA_GUARD_3_CATEGORIES)
    unknown = [c for c in codes if c not in LLAMA_GUARD_3_CATEGORIES]
    if unknown or not codes:
        raise ValueError(
            f"dataset config {name!r}: categories must be Llama Guard 3 codes "
            f"{list(LLAMA_GUARD_3_CATEGORIES)}, got unknown {unknown or 'an empty list'}"
        )
    fraction = float(cfg.get("train_fraction", 0.0))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"dataset config {name!r}: train_fraction must lie in [0, 1), got {fraction}"
        )
    default_split = cfg.get("default_split", "test")
    if default_split not in SPLITS:
        raise ValueError(
            f"dataset config {name!r}: default_split must be one of {list(SPLITS)}, "
            f"got {default_split!r}"
        )
    return codes, labels_as, fraction, int(cfg.get("seed", 0)), default_split


def load(cfg: dict, root) -> CanonicalDataset:
    name = cfg.get("name", LOADER)
    if cfg.get("multilabel") is False:
        raise ValueError(f"dataset config {name!r}: the content-safety benchmark is multi-label")
    codes, labels_as, fraction, seed, default_split = _settings(cfg, name)
    try:
        path = config_file(cfg, "data", root, LOADER, "content-safety JSON Lines file")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} ({SOURCE})") from None
    label_of = {c: (c if labels_as == "code" else LLAMA_GUARD_3_CATEGORIES[c]) for c in codes}
    drops = DropLog(name)
    records, seen = [], {}
    for row, (where, obj) in enumerate(iter_jsonl(path, required=(TEXT_FIELD, LABEL_FIELD)), 1):
        text = obj[TEXT_FIELD]
        if not isinstance(text, str) or not text.strip():
            raise DatasetFormatError(f"{where}: field {TEXT_FIELD!r} is empty")
        cats = obj[LABEL_FIELD]
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise DatasetFormatError(
                f"{where}: field {LABEL_FIELD!r} must be a list of codes such as "
                f'["S1", "S10"], got {cats!r}'
            )
        bad = [c for c in cats if c.strip() not in LLAMA_GUARD_3_CATEGORIES]
        if bad:
            raise DatasetFormatError(
                f"{where}: field {LABEL_FIELD!r} has unknown categories {bad}; expected "
                f"Llama Guard 3 codes S1..S14"
            )
        kept = [c.strip() for c in cats if c.strip() in label_of]
        if len(kept) < len(cats):
            drops.drop("category codes outside the configured categories", where)
        ex_id = str(obj.get("id", row)).strip()
        if ex_id in seen:
            raise DatasetFormatError(f"{where}: duplicate id {ex_id!r} (first at {seen[ex_id]})")
        seen[ex_id] = where
        # the file's text verbatim, minus the blank lines some queries start or end with
        records.append({"id": ex_id, "text": text.strip(), "labels": [label_of[c] for c in kept]})
    if not records:
        raise DatasetFormatError(f"{path}: no rows; expected one JSON object per line")
    n_train = int(round(fraction * len(records)))
    train = set(np.random.default_rng(seed).permutation(len(records))[:n_train].tolist())
    for k, rec in enumerate(records):
        rec.update(split="train" if k in train else default_split, annotators=[])
        rec["annotator_labels"] = []
    notes = {
        "source": str(cfg["files"]["data"]),
        "labels_as": labels_as,
        "categories": {label_of[c]: f"{c} {LLAMA_GUARD_3_CATEGORIES[c]}" for c in codes},
        "dropped": drops.report(),
    }
    labels = [label_of[c] for c in codes]
    if cfg.get("unsafe_label", False):
        # the second paper's label set: every query is unsafe, and Llama Guard says so first
        labels = [UNSAFE_LABEL, *labels]
        for rec in records:
            rec["labels"] = [UNSAFE_LABEL, *rec["labels"]]
        notes["unsafe_label"] = True
    return build_dataset(name, records, labels, True, notes, f"{LOADER}:{name}")
