"""Dataset loaders (one module per dataset) and the canonical table they all write.

``prepare(dataset_cfg, root)`` reads the real published files named in a dataset config
(config/dataset/<name>.yaml) and returns a :class:`CanonicalDataset`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from .canonical import (
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
    return dataset


__all__ = [
    "LOADERS",
    "CanonicalDataset",
    "dist_column",
    "human_distribution_from_annotations",
    "load_canonical",
    "prepare",
    "save_canonical",
]
