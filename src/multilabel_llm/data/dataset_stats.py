"""Table 1 of the paper: annotators, agreement and how many labels examples carry.

Agreement figure: the paper reports "Cohen's kappa" without saying how it was computed for many
raters. We report Fleiss' kappa, the many-rater generalisation of Cohen's kappa, in the form that
allows a different number of annotators per example:
  P_i = sum_c n_ic (n_ic - 1) / (n_i (n_i - 1))     (agreeing annotator pairs on example i)
  P_e = sum_c p_c^2 with p_c = sum_i n_ic / sum_i n_i (pooled category rates)
  kappa = (mean_i P_i - P_e) / (1 - P_e)
over examples with at least two annotators. Multi-label datasets: one binary kappa per label
(categories chosen / not chosen), averaged over labels (macro). Single-label datasets: one kappa
over the label categories. NaN where no example has two annotators.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from multilabel_llm.core.io import write_csv, write_text
from multilabel_llm.data.canonical import CanonicalDataset

COLUMNS = [
    "dataset",
    "n_examples",
    "annotators",
    "annotators_per_example",
    "kappa",
    "labels_0",
    "labels_1",
    "labels_2",
    "labels_3plus",
]


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa for an items × categories matrix of annotator counts (rows may differ in sum)."""
    counts = np.asarray(counts, dtype=float)
    n_i = counts.sum(axis=1)
    counts = counts[n_i >= 2]
    n_i = n_i[n_i >= 2]
    if len(counts) == 0:
        return float("nan")
    p_i = (counts * (counts - 1)).sum(axis=1) / (n_i * (n_i - 1))
    p_c = counts.sum(axis=0) / n_i.sum()
    p_e = float((p_c**2).sum())
    if math.isclose(p_e, 1.0):
        return float("nan")
    return float((p_i.mean() - p_e) / (1 - p_e))


def dataset_kappa(ds: CanonicalDataset, frame: pd.DataFrame | None = None) -> float:
    frame = ds.examples if frame is None else frame
    annotated = [a for a in frame["annotator_labels"] if len(a) >= 2]
    if not annotated:
        return float("nan")
    if ds.multilabel:
        kappas = []
        for lab in ds.labels:
            chosen = np.array([sum(lab in set(a) for a in ann) for ann in annotated])
            total = np.array([len(ann) for ann in annotated])
            kappas.append(fleiss_kappa(np.stack([chosen, total - chosen], axis=1)))
        kappas = [k for k in kappas if not math.isnan(k)]
        return float(np.mean(kappas)) if kappas else float("nan")
    index = {lab: j for j, lab in enumerate(ds.labels)}
    counts = np.zeros((len(annotated), len(ds.labels)))
    for i, ann in enumerate(annotated):
        for labels in ann:
            for lab in labels:  # single-label: one label per annotator
                counts[i, index[lab]] += 1
    return fleiss_kappa(counts)


def dataset_row(ds: CanonicalDataset, splits: Sequence[str] | None = None) -> dict:
    frame = ds.examples if splits is None else ds.examples[ds.examples["split"].isin(list(splits))]
    n_labels = frame["labels"].map(len)
    n = len(frame)
    with_annotators = frame[frame["n_annotators"] > 0]
    annotators = {a for row in with_annotators["annotators"] for a in row}
    return {
        "dataset": ds.name,
        "n_examples": n,
        "annotators": len(annotators) if ds.has_annotators else None,
        "annotators_per_example": float(with_annotators["n_annotators"].mean())
        if ds.has_annotators and len(with_annotators)
        else None,
        "kappa": dataset_kappa(ds, frame) if ds.has_annotators else None,
        "labels_0": float((n_labels == 0).mean()) if n else None,
        "labels_1": float((n_labels == 1).mean()) if n else None,
        "labels_2": float((n_labels == 2).mean()) if n else None,
        "labels_3plus": float((n_labels >= 3).mean()) if n else None,
    }


def table1(
    datasets: Sequence[CanonicalDataset], splits: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per dataset; shares are fractions in [0, 1], None where a figure does not exist."""
    return pd.DataFrame([dataset_row(ds, splits) for ds in datasets], columns=COLUMNS)


def _pct(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if 0 < x < 0.005:
        return "<1%"
    return f"{100 * x:.0f}%"


def to_markdown(table: pd.DataFrame) -> str:
    """The paper's layout: Annotators (per example), kappa, 0 / 1 / 2 / 3+ labels."""
    lines = [
        "| Dataset | Annotators (per example) | Fleiss' kappa | 0 labels | 1 label | 2 labels | 3+ labels |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        if row["annotators"] is None or pd.isna(row["annotators"]):
            annotators = "– (–)"
        else:
            annotators = f"{int(row['annotators'])} ({row['annotators_per_example']:.2f})"
        kappa = row["kappa"]
        kappa = "–" if kappa is None or pd.isna(kappa) else f"{kappa:.2f}"
        shares = " | ".join(
            _pct(row[c]) for c in ("labels_0", "labels_1", "labels_2", "labels_3plus")
        )
        lines.append(f"| {row['dataset']} | {annotators} | {kappa} | {shares} |")
    lines.append("")
    lines.append(
        "Kappa: Fleiss' kappa with a variable number of annotators per example, averaged over "
        "labels for multi-label datasets (see multilabel_llm.data.dataset_stats). – : no per-annotator labels."
    )
    return "\n".join(lines) + "\n"


def write_table1(
    table: pd.DataFrame, csv_path: str | os.PathLike, md_path: str | os.PathLike
) -> None:
    write_csv(csv_path, table, index=False)
    write_text(md_path, to_markdown(table))
