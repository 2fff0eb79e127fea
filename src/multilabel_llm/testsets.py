"""Test sets as id lists (paper §A.4), seeded and reproducible.

Kinds (``kind:`` in a test-set config; the name decides when ``kind`` is absent):
  main        ``main_test_set``: ``size`` examples spread uniformly over the cells
              label count (none / single / multi) × annotators (agreement / disagreement).
              A dimension that does not vary is left out: single-label datasets have no
              label-count cells, datasets without annotators no agreement cells.
  multilabel  only examples with two or more aggregate labels.
  ids_file    a user-supplied id list (one id per line, ``#`` comments), checked against the data.
  all         every example of the chosen splits.
Candidates come from ``splits`` (default: the dataset's ``test_splits``).

Agreement: an example shows disagreement when its annotators' label sets are not all equal
(equivalently, some label's human distribution lies strictly between 0 and 1). An example with
fewer than two annotators has no one to disagree with and counts as agreement.
Sampling: ids of each cell are sorted, shuffled with ``numpy.random.default_rng(seed)``, and the
cells are visited round-robin until ``size`` ids are taken, so a cell with too few examples
gives its share to the others and the set stays uniform wherever it can. Shortfalls are logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .datasets.canonical import SPLITS, CanonicalDataset
from .io import read_id_list

log = logging.getLogger("multilabel_llm.testsets")

KINDS = ("main", "multilabel", "ids_file", "all")
DEFAULT_KIND = {"main_test_set": "main", "multilabel": "multilabel", "big_multilabel": "multilabel"}
LABEL_CLASSES = ("none", "single", "multi")


def get_testset_cfg(dataset_cfg: dict, name: str, root: str | os.PathLike = ".") -> dict:
    """The complete config of test set ``name`` of a dataset: kind, size, seed, splits, ids_file."""
    defined = dataset_cfg.get("testsets") or {}
    if name not in defined and name not in DEFAULT_KIND:
        raise ValueError(
            f"dataset {dataset_cfg.get('name')!r} defines no test set {name!r} "
            f"(testsets: {sorted(defined)}); add it under `testsets:` in its config"
        )
    cfg = {"size": 200, "seed": 0, "splits": list(dataset_cfg.get("test_splits") or ["test"])}
    cfg.update(dict(defined.get(name) or {}))
    cfg.setdefault("kind", "ids_file" if cfg.get("ids_file") else DEFAULT_KIND.get(name, "main"))
    if cfg.get("ids_file"):
        cfg["ids_file"] = str(
            Path(cfg["ids_file"])
            if Path(cfg["ids_file"]).is_absolute()
            else Path(root) / cfg["ids_file"]
        )
    return cfg


def input_files(dataset_cfg: dict, name: str, root: str | os.PathLike = ".") -> list[str]:
    """The user-supplied id list of a test set, if it has one and it exists (Snakemake input)."""
    path = (dataset_cfg.get("testsets") or {}).get(name, {}) or {}
    path = path.get("ids_file")
    if not path:
        return []
    full = Path(path) if Path(path).is_absolute() else Path(root) / path
    return [str(path)] if full.is_file() else []


def label_class(labels) -> str:
    n = len(labels)
    return LABEL_CLASSES[min(n, 2)]


def has_disagreement(annotator_labels) -> bool:
    sets = [frozenset(a) for a in annotator_labels]
    return len(sets) >= 2 and len(set(sets)) > 1


def example_cells(ds: CanonicalDataset, frame) -> list[tuple]:
    """Cell of each row of ``frame``: (label class?, agreement?) with constant dimensions left out."""
    use_labels = ds.multilabel
    use_agreement = ds.has_annotators
    cells = []
    for labels, annotator_labels in zip(frame["labels"], frame["annotator_labels"], strict=True):
        cell = ()
        if use_labels:
            cell += (label_class(labels),)
        if use_agreement:
            cell += ("disagreement" if has_disagreement(annotator_labels) else "agreement",)
        cells.append(cell)
    return cells


def all_cells(ds: CanonicalDataset) -> list[tuple]:
    dims = []
    if ds.multilabel:
        dims.append(LABEL_CLASSES)
    if ds.has_annotators:
        dims.append(("agreement", "disagreement"))
    cells = [()]
    for dim in dims:
        cells = [c + (v,) for c in cells for v in dim]
    return cells


def _candidates(ds: CanonicalDataset, splits):
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise ValueError(f"test set splits {bad} unknown; expected a subset of {list(SPLITS)}")
    frame = ds.examples[ds.examples["split"].isin(list(splits))]
    if frame.empty:
        raise ValueError(f"{ds.name}: no examples in splits {list(splits)} to draw a test set from")
    return frame


def _round_robin(groups: list[list[str]], size: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(sorted(g))) if g else [] for g in groups]
    taken: list[str] = []
    position = [0] * len(queues)
    while len(taken) < size and any(position[i] < len(q) for i, q in enumerate(queues)):
        for i, queue in enumerate(queues):
            if len(taken) >= size:
                break
            if position[i] < len(queue):
                taken.append(str(queue[position[i]]))
                position[i] += 1
    return taken


def build_testset(ds: CanonicalDataset, name: str, cfg: dict) -> list[str]:
    """Return the ids of test set ``name`` in dataset-table order (see module docstring)."""
    kind = cfg.get("kind") or DEFAULT_KIND.get(name, "main")
    if kind not in KINDS:
        raise ValueError(f"test set {name!r}: kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "ids_file":
        return _from_file(ds, cfg["ids_file"])
    size = int(cfg.get("size", 200))
    seed = int(cfg.get("seed", 0))
    if size < 1:
        raise ValueError(f"test set {name!r}: size must be >= 1, got {size}")
    frame = _candidates(ds, cfg.get("splits") or ["test"])
    if kind == "all":
        return frame["id"].astype(str).tolist()
    if kind == "multilabel":
        if not ds.multilabel:
            raise ValueError(
                f"test set {name!r}: {ds.name} is single-label; a multi-label-only set is empty"
            )
        pool = frame[frame["labels"].map(len) >= 2]["id"].astype(str).tolist()
        chosen = _round_robin([pool], size, seed)
        groups_info = {"multi": len(pool)}
    else:
        cells = example_cells(ds, frame)
        order = all_cells(ds)
        ids = frame["id"].astype(str).tolist()
        groups = [[i for i, c in zip(ids, cells, strict=True) if c == cell] for cell in order]
        chosen = _round_robin(groups, size, seed)
        groups_info = {
            "/".join(cell) or "all": len(g) for cell, g in zip(order, groups, strict=True)
        }
        quota = size / max(len(order), 1)
        short = {k: n for k, n in groups_info.items() if n < quota}
        if short:
            log.warning(
                "%s/%s: cells with fewer than %.0f candidates %s; others filled the gap",
                ds.name,
                name,
                quota,
                short,
            )
    if len(chosen) < size:
        log.warning(
            "%s/%s: only %d candidates in splits %s, wanted %d; the set has %d ids",
            ds.name,
            name,
            sum(groups_info.values()),
            cfg.get("splits"),
            size,
            len(chosen),
        )
    if not chosen:
        raise ValueError(f"test set {name!r} of {ds.name}: no candidate examples ({groups_info})")
    chosen_set = set(chosen)
    return [i for i in ds.examples["id"].astype(str) if i in chosen_set]


def _from_file(ds: CanonicalDataset, path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"test set id list {path} does not exist")
    ids = read_id_list(path)
    if not ids:
        raise ValueError(f"{path}: the id list is empty")
    seen, dup = set(), []
    for i in ids:
        if i in seen:
            dup.append(i)
        seen.add(i)
    if dup:
        raise ValueError(f"{path}: duplicate ids {dup[:5]}")
    known = set(ds.examples["id"].astype(str))
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} ids are not in dataset {ds.name}, e.g. {missing[:5]}"
        )
    return ids


def describe(ds: CanonicalDataset, ids) -> dict:
    """Cell counts of a test set, for logs and the report."""
    frame = ds.examples.set_index("id").loc[list(ids)]
    counts: dict[str, int] = {}
    for cell in example_cells(ds, frame):
        key = "/".join(cell) or "all"
        counts[key] = counts.get(key, 0) + 1
    return counts
