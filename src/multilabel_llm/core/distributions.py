"""The distribution contract: an ``id`` column plus one float column per label, values in [0, 1].

Every method writes such a frame (docs/ARCHITECTURE.md): labels in dataset order, one row per
test-set id; for single-label datasets rows sum to 1. The engine (marginalisation), the
methods, the scoring and the explorer build and check frames with these functions. No torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def distribution_frame(ids: Sequence[str], labels: Sequence[str], values) -> pd.DataFrame:
    """``values`` (``len(ids)`` × ``len(labels)``) as a frame with its ``id`` column first."""
    values = np.asarray(values, dtype=float).reshape(len(ids), len(labels))
    frame = pd.DataFrame(values, columns=list(labels))
    frame.insert(0, "id", [str(i) for i in ids])
    return frame


def validate_distribution(
    frame: pd.DataFrame, labels: Sequence[str], multilabel: bool, source: str, atol: float = 1e-6
) -> None:
    """Raise ValueError naming ``source`` when ``frame`` breaks the distribution contract."""
    missing = [c for c in ["id", *labels] if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: distribution lacks columns {missing}")
    dup = frame["id"][frame["id"].duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"{source}: duplicate ids {dup[:5]}")
    values = frame[list(labels)].to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"{source}: id {frame['id'].iloc[row]} has values outside [0, 1]: {values[row].tolist()}"
        )
    if not multilabel:
        sums = values.sum(axis=1)
        off = np.abs(sums - 1.0) > atol
        if off.any():
            row = int(np.argmax(off))
            raise ValueError(
                f"{source}: single-label row {frame['id'].iloc[row]} sums to {sums[row]:.6f}, not 1"
            )


def align_to_ids(frame: pd.DataFrame, ids: Sequence[str], labels: Sequence[str], source: str):
    """Rows of ``frame`` in the order of ``ids`` (a test set); raise on missing ids."""
    indexed = frame.assign(id=frame["id"].astype(str)).set_index("id")
    missing = [i for i in ids if i not in indexed.index]
    if missing:
        raise ValueError(
            f"{source}: {len(missing)} test-set ids have no distribution row, e.g. {missing[:5]}"
        )
    return indexed.loc[list(ids), list(labels)].to_numpy(dtype=float)


def normalise_rows(values) -> np.ndarray:
    """Rows scaled to sum 1; an all-zero row becomes uniform."""
    values = np.asarray(values, dtype=float)
    sums = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / max(values.shape[1], 1))
    return np.where(sums > 0, values / np.where(sums > 0, sums, 1.0), uniform)
