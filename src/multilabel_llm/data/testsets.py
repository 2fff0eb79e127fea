"""Test sets as id lists (paper §A.4), seeded and reproducible.

Kinds (``kind:`` in a test-set config; the name decides when ``kind`` is absent):
  main        ``main_test_set``: ``size`` examples spread uniformly over the cells
              label count (none / single / multi) × annotators (agreement / disagreement).
              A dimension that does not vary is left out: single-label datasets have no
              label-count cells, datasets without annotators no agreement cells.
  multilabel  only examples with two or more aggregate labels.
  ids_file    a user-supplied id list (one id per line, ``#`` comments), e.g. the paper's own
              test sets in data/paper-test-ids/. Every listed id must be in the dataset (an
              unknown one is an error naming the file and line) and is kept as spelled; ids
              outside ``splits`` are logged. Without ``size`` the set is the whole list in file
              order; with ``size`` (+ ``seed``) a seeded subsample of it (the sampling below, one
              cell), still in file order, so a smaller size gives a subset of a larger one.
  all         every example of the chosen splits.
  sample      ``size`` examples drawn uniformly at random (seeded) from the chosen splits,
              e.g. probe training data that leaves the rest of train for demonstrations.
Candidates come from ``splits`` (default: the dataset's ``test_splits``). A single-label dataset
has no ``multilabel``-kind set: asking for one is an error.

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

from multilabel_llm.data.canonical import SPLITS, CanonicalDataset

log = logging.getLogger("multilabel_llm.data.testsets")

KINDS = ("main", "multilabel", "ids_file", "all", "sample")
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
    own = dict(defined.get(name) or {})
    kind = own.get("kind") or (
        "ids_file" if own.get("ids_file") else DEFAULT_KIND.get(name, "main")
    )
    if kind == "multilabel" and dataset_cfg.get("multilabel") is False:
        raise ValueError(
            f"dataset {dataset_cfg.get('name')!r} is single-label: it has no multi-label-only "
            f"test set {name!r}; leave it out of the experiment's testsets for this dataset"
        )
    cfg = {"seed": 0, "splits": list(dataset_cfg.get("test_splits") or ["test"])}
    if kind != "ids_file":
        cfg["size"] = 200  # an id list is taken whole unless it sets a size
    cfg.update(own)
    cfg["kind"] = kind
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
        if not cfg.get("ids_file"):
            raise ValueError(f"test set {name!r}: kind ids_file needs `ids_file: <path>`")
        return _from_file(ds, name, cfg)
    size = int(cfg.get("size", 200))
    seed = int(cfg.get("seed", 0))
    if size < 1:
        raise ValueError(f"test set {name!r}: size must be >= 1, got {size}")
    frame = _candidates(ds, cfg.get("splits") or ["test"])
    if kind == "all":
        return frame["id"].astype(str).tolist()
    if kind == "sample":
        ids = frame["id"].astype(str).tolist()
        chosen = _round_robin([ids], size, seed)
        groups_info = {"all": len(ids)}
    elif kind == "multilabel":
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


def _read_numbered_ids(path: Path) -> list[tuple[int, str]]:
    """(line number, id) per id line; blank lines and ``#`` comments skipped (as io.read_id_list)."""
    with open(path, encoding="utf-8") as handle:
        rows = [(n, line.strip()) for n, line in enumerate(handle, start=1)]
    return [(n, i) for n, i in rows if i and not i.startswith("#")]


def _from_file(ds: CanonicalDataset, name: str, cfg: dict) -> list[str]:
    path = Path(cfg["ids_file"])
    if not path.is_file():
        raise FileNotFoundError(f"test set {name!r}: id list {path} does not exist")
    rows = _read_numbered_ids(path)
    if not rows:
        raise ValueError(f"{path}: the id list is empty")
    first_line: dict[str, int] = {}
    for lineno, i in rows:
        if i in first_line:
            raise ValueError(f"{path}:{lineno}: duplicate id {i!r} (first at line {first_line[i]})")
        first_line[i] = lineno
    split_of = dict(zip(ds.examples["id"].astype(str), ds.examples["split"], strict=True))
    missing = [(n, i) for n, i in rows if i not in split_of]
    if missing:
        lineno, first = missing[0]
        more = ", ".join(f"line {n} {i!r}" for n, i in missing[1:4])
        raise ValueError(
            f"{path}:{lineno}: id {first!r} is not in dataset {ds.name}; "
            f"{len(missing)} of {len(rows)} listed ids are missing"
            + (f" (also {more}{', ...' if len(missing) > 4 else ''})" if more else "")
            + ". Is the list for this dataset, and are all of its files configured?"
        )
    ids = [i for _, i in rows]
    splits = list(cfg.get("splits") or [])
    outside = [i for i in ids if splits and split_of[i] not in splits]
    if outside:
        log.warning(
            "%s/%s: %d of %d ids of %s are outside splits %s (e.g. %s)",
            ds.name, name, len(outside), len(ids), path, splits, outside[:3],
        )  # fmt: skip
    if cfg.get("size") is None:
        return ids
    size = int(cfg["size"])
    if size < 1:
        raise ValueError(f"test set {name!r}: size must be >= 1, got {size}")
    if size > len(ids):
        log.warning(
            "%s/%s: size %d is larger than the %d ids of %s; the whole list is used",
            ds.name, name, size, len(ids), path,
        )  # fmt: skip
    chosen = set(_round_robin([ids], size, int(cfg.get("seed", 0))))
    return [i for i in ids if i in chosen]


def describe(ds: CanonicalDataset, ids) -> dict:
    """Cell counts of a test set, for logs and the report."""
    frame = ds.examples.set_index("id").loc[list(ids)]
    counts: dict[str, int] = {}
    for cell in example_cells(ds, frame):
        key = "/".join(cell) or "all"
        counts[key] = counts.get(key, 0) + 1
    return counts
