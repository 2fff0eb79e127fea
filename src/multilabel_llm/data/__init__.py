"""Dataset loaders (one module per dataset) and the canonical table they all write.

``prepare(dataset_cfg, root)`` reads the real published files named in a dataset config
(config/dataset/<name>.yaml) and returns a :class:`CanonicalDataset`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from multilabel_llm import NONE_LABEL
from multilabel_llm.data._common import DatasetFormatError
from multilabel_llm.data.canonical import (
    CanonicalDataset,
    dist_column,
    human_distribution_from_annotations,
    load_canonical,
    save_canonical,
)

# loader name -> module in this package; each module has ``load(cfg, root)``.
LOADERS = {
    "goemotions": "goemotions",
    "mfrc": "mfrc",
    "semeval": "semeval",
    "hatexplain": "hatexplain",
    "msp_podcast": "msp_podcast",
    "boxes": "boxes",
    "generic": "generic",
    "content_safety": "content_safety",
}


def prepare(dataset_cfg: dict, root: str | os.PathLike = ".") -> CanonicalDataset:
    """Load one dataset from its config; relative paths resolve against ``root`` (the repo root)."""
    loader = dataset_cfg.get("loader")
    if loader not in LOADERS:
        raise ValueError(
            f"dataset config {dataset_cfg.get('name')!r}: loader must be one of {sorted(LOADERS)}, got {loader!r}"
        )
    module = importlib.import_module(f".{LOADERS[loader]}", __name__)
    dataset = module.load(dict(dataset_cfg), Path(root))
    expected = dataset_cfg.get("multilabel")
    if expected is not None and bool(expected) != dataset.multilabel:
        raise ValueError(
            f"dataset config {dataset_cfg.get('name')!r}: multilabel={expected} but the {loader} "
            f"loader produced multilabel={dataset.multilabel}"
        )
    check_label_names(dataset.labels, f"dataset {dataset_cfg.get('name')!r} ({loader} loader)")
    return dataset


def check_label_names(labels: list[str], source: str) -> None:
    """Each label once, none named like the prompts' no-label answer: a label ``none`` makes
    compare-to-none compare that label with itself (0.5 everywhere, in published tables)."""
    seen: set[str] = set()
    twice = sorted({lab for lab in labels if lab in seen or seen.add(lab)})
    if twice:
        raise DatasetFormatError(f"{source}: labels {twice} appear more than once; list each once")
    reserved = [lab for lab in labels if str(lab).strip().lower() == NONE_LABEL]
    if reserved:
        raise DatasetFormatError(
            f"{source}: label {reserved[0]!r} is the pipeline's own no-label answer "
            f"({NONE_LABEL!r}); rename it in the data or with the dataset config's labels"
        )


def input_files(dataset_cfg: dict, root: str | os.PathLike = ".") -> list[str]:
    """Every file a dataset config names that exists, as written (for Snakemake ``input:``).

    Missing files are left out on purpose: the job then fails inside the loader with an error
    that names the expected path and where the dataset comes from.
    """
    values = []
    for value in (dataset_cfg.get("files") or {}).values():
        values.extend(value if isinstance(value, list | tuple) else [value])
    for key in ("pooling",):
        if dataset_cfg.get(key):
            values.append(dataset_cfg[key])
    root = Path(root)
    found = []
    for value in values:
        if value in (None, ""):
            continue
        path = Path(str(value))
        full = path if path.is_absolute() else root / path
        if full.is_file() and str(value) not in found:
            found.append(str(value))
    return found


__all__ = [
    "check_label_names",
    "input_files",
    "LOADERS",
    "CanonicalDataset",
    "dist_column",
    "human_distribution_from_annotations",
    "load_canonical",
    "prepare",
    "save_canonical",
]
