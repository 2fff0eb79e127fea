"""Alignment scoring: distribution files against the human distribution, with bootstrap CIs.

Products (the rendering lives in :mod:`multilabel_llm.scoring.tables`):
* :func:`alignment_table` — one row per (model, prompt, testset, method) on one dataset,
  every metric of ``metrics.METRICS`` as ``mean, ci_low, ci_high``.
* :func:`token_level_table` — the second paper's metrics (Praharaj & Kasundra 2025) of the
  same distributions against the aggregate labels.
* :func:`results_long` — both as one long table (dataset, model, prompt, testset, method,
  metric, value, ci_low, ci_high, n, untrained_reason) that every report table is a view of.
Method rows take their names from the method config (``display_name``, ``group``,
``order``, ``applies_to``), so any distribution file (probes, Demux, SFT) becomes a row.

A supervised row that did not learn is marked *untrained* (:func:`mark_untrained`) instead of
printing numbers that look like results: when it beats the constant baseline on none of the
table's metrics, when its output is the same for every test example, or when its training
said so (a ``note`` column in its distribution file, e.g. a degenerate probe). The numbers
stay; the rendered cells read ``untrained`` with the reason under the table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from multilabel_llm.core.distributions import align_to_ids, validate_distribution
from multilabel_llm.core.metrics import (
    LOWER_IS_BETTER,
    METRICS,
    TOKEN_LEVEL_METRICS,
    MetricSettings,
    bootstrap_ci,
    reference_distribution,
    score_examples,
    token_level_metrics,
)
from multilabel_llm.data.canonical import CanonicalDataset

GROUP_ORDER = ("baseline", "test_time", "supervised", "reference")
METRIC_TITLES = {
    "nll": "NLL ↓",
    "l1": "L1 ↓",
    "example_f1": "F1 ↑",
    "micro_f1": "Micro-F1 ↑",
    "macro_f1": "Macro-F1 ↑",
}
PAPER_METRICS = ("nll", "l1", "example_f1")
BASELINE = "constant"  # the method slot supervised rows must beat (config/method/constant.yaml)
CONSTANT_SPREAD = 1e-6  # output std (max over labels) below this: the same answer everywhere
RUN_KEYS = ("model", "prompt", "testset", "method")
RESULTS_KEYS = ("dataset", *RUN_KEYS)
# pandas >= 3 parses floats round-trip exact by default (and deprecates the option)
_ROUND_TRIP = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
RESULTS_COLUMNS = (*RESULTS_KEYS, "metric", "value", "ci_low", "ci_high", "n", "untrained_reason")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    display_name: str
    group: str = "test_time"
    order: int = 100
    applies_to: tuple[str, ...] = ("multilabel", "single_label")

    @classmethod
    def from_cfg(cls, name: str, cfg: Mapping | None) -> MethodInfo:
        cfg = dict(cfg or {})
        group = cfg.get("group", "test_time")
        if group not in GROUP_ORDER:
            raise ValueError(f"method {name!r}: group {group!r} not in {list(GROUP_ORDER)}")
        return cls(
            name=name,
            display_name=str(cfg.get("display_name", name)),
            group=group,
            order=int(cfg.get("order", 100)),
            applies_to=tuple(cfg.get("applies_to", ("multilabel", "single_label"))),
        )

    def applies(self, multilabel: bool) -> bool:
        return ("multilabel" if multilabel else "single_label") in self.applies_to

    def sort_key(self):
        return (GROUP_ORDER.index(self.group), self.order, self.display_name)


@dataclass
class BootstrapSettings:
    n: int = 1000
    seed: int = 0
    alpha: float = 0.05


@dataclass
class AlignmentEntry:
    """One distribution file to score: where it is and which slots produced it."""

    model: str
    prompt: str
    testset: str
    method: str
    path: str
    extra: dict = field(default_factory=dict)


def score_distribution(
    frame: pd.DataFrame,
    dataset: CanonicalDataset,
    ids: Sequence[str],
    settings: MetricSettings | None = None,
    bootstrap: BootstrapSettings | None = None,
    source: str = "distribution",
) -> dict:
    """Metrics with CIs of one distribution frame on the test-set ``ids``."""
    bootstrap = bootstrap or BootstrapSettings()
    ids = [str(i) for i in ids]
    validate_distribution(frame, dataset.labels, True, source)  # range/columns; sums below
    q = align_to_ids(frame, ids, dataset.labels, source)
    h, gold, n_fallback = reference_distribution(dataset, ids)
    notes = frame["note"].dropna().astype(str).unique().tolist() if "note" in frame else []
    scores = score_examples(q, h, gold, dataset.multilabel, settings, ids)
    cis = bootstrap_ci(scores, bootstrap.n, bootstrap.seed, bootstrap.alpha)
    row = {
        "n_examples": len(ids),
        "reference": "human"
        if n_fallback == 0
        else ("gold" if n_fallback == len(ids) else "mixed"),
        # how much the output varies across examples (0: one answer for every example)
        "output_spread": float(q.std(axis=0).max()) if len(q) else 0.0,
        "note": "; ".join(n for n in notes if n),  # what the method's training reported
    }
    for metric, (mean, lo, hi) in cis.items():
        row[metric] = mean
        row[f"{metric}_ci_low"] = lo
        row[f"{metric}_ci_high"] = hi
    return row


def alignment_table(
    entries: Sequence[AlignmentEntry],
    dataset: CanonicalDataset,
    testset_ids: Mapping[str, Sequence[str]],
    methods: Mapping[str, MethodInfo],
    dataset_name: str | None = None,
    settings: MetricSettings | None = None,
    bootstrap: BootstrapSettings | None = None,
    progress=None,
) -> pd.DataFrame:
    """One row per entry, sorted by model, prompt, testset and method order."""
    rows = []
    iterator = progress(entries) if progress is not None else entries
    for entry in iterator:
        info = methods.get(entry.method) or MethodInfo(entry.method, entry.method)
        if entry.testset not in testset_ids:
            raise ValueError(f"{entry.path}: no id list for test set {entry.testset!r}")
        frame = pd.read_parquet(entry.path)
        row = {
            "dataset": dataset_name or dataset.name,
            "model": entry.model,
            "prompt": entry.prompt,
            "testset": entry.testset,
            "method": entry.method,
            "display_name": info.display_name,
            "group": info.group,
            "order": info.order,
            "multilabel": bool(dataset.multilabel),
            "applicable": info.applies(dataset.multilabel),
        }
        row.update(
            score_distribution(
                frame, dataset, testset_ids[entry.testset], settings, bootstrap, entry.path
            )
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["_g"] = frame["group"].map(GROUP_ORDER.index)
    frame = frame.sort_values(["model", "prompt", "testset", "_g", "order", "display_name"])
    return mark_untrained(frame.drop(columns="_g").reset_index(drop=True))


def mark_untrained(
    frame: pd.DataFrame, baseline: str = BASELINE, metrics: Sequence[str] = PAPER_METRICS
) -> pd.DataFrame:
    """Add ``untrained`` (bool) and ``untrained_reason`` to the supervised rows of an alignment
    frame; other rows get False and "".

    A supervised row is untrained when its training reported so (``note``), when its output
    is the same for every example (``output_spread``), or when it beats the ``baseline``
    method's row of the same dataset/model/prompt/test set on none of ``metrics`` (means;
    ties do not beat). Without a baseline row only the first two apply.
    """
    frame = frame.copy()
    frame["untrained"] = False
    frame["untrained_reason"] = ""
    if frame.empty:
        return frame
    keys = [k for k in ("dataset", "model", "prompt", "testset") if k in frame.columns]
    base = frame[frame["method"] == baseline].drop_duplicates(keys).set_index(keys)
    for pos, rec in enumerate(frame.to_dict("records")):
        if rec.get("group") != "supervised":
            continue
        reasons = []
        note = rec.get("note")
        if isinstance(note, str) and note:
            reasons.append(note)
        spread = rec.get("output_spread")
        if spread is not None and not pd.isna(spread) and spread < CONSTANT_SPREAD:
            reasons.append(f"the same output for all {rec.get('n_examples', '?')} examples")
        key = tuple(rec[k] for k in keys)
        if key in base.index:
            ref = base.loc[key]
            beats = [
                m for m in metrics if (rec[m] < ref[m] if LOWER_IS_BETTER[m] else rec[m] > ref[m])
            ]
            if not beats:
                shown = ", ".join(
                    f"{METRIC_TITLES[m].split()[0]} {rec[m]:.2f} vs {ref[m]:.2f}" for m in metrics
                )
                reasons.append(f"beats {ref['display_name']} on no metric ({shown})")
        if reasons:
            frame.iloc[pos, frame.columns.get_loc("untrained")] = True
            frame.iloc[pos, frame.columns.get_loc("untrained_reason")] = "; ".join(reasons)
    return frame


# ---------------------------------------------------------------------------- token level


def token_level_table(
    runs: Sequence[Mapping],
    dist_paths: Sequence[str | os.PathLike],
    dataset: CanonicalDataset,
    testset_ids: Mapping[str, Sequence[str]],
    methods: Mapping[str, Mapping],
    threshold: float,
) -> pd.DataFrame:
    """One row per run (``model``, ``prompt``, ``testset``, ``method``) with its distribution
    file: :func:`metrics.token_level_metrics` at ``threshold`` against the aggregate labels,
    the share of rows whose probabilities are all zero (``zero_rows``) and, for the model's
    path searches (rule marginalize writes ``<method>.paths.parquet`` beside the
    distribution), the mean explored mass per row (``explored_mass``; NaN for other methods)."""
    rows = []
    for run, path in zip(runs, dist_paths, strict=True):
        ids = [str(i) for i in testset_ids[run["testset"]]]
        q = align_to_ids(pd.read_parquet(path), ids, dataset.labels, str(path))
        explored = float("nan")
        paths_file = Path(path).with_name(f"{Path(path).stem}.paths.parquet")
        if paths_file.is_file():
            stats = pd.read_parquet(paths_file).assign(id=lambda f: f["id"].astype(str))
            explored = float(stats.set_index("id").loc[ids, "explored_mass"].mean())
        gold = dataset.gold_matrix(ids).to_numpy(dtype=float)
        info = methods.get(run["method"], {})
        rows.append(
            {
                **{k: run[k] for k in RUN_KEYS},
                "display_name": info.get("display_name", run["method"]),
                "n_examples": len(ids),
                "threshold": threshold,
                **token_level_metrics(q, gold, threshold),
                "zero_rows": float((q <= 0).all(axis=1).mean()) if len(ids) else float("nan"),
                "explored_mass": explored,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- long format


def results_long(
    alignment: pd.DataFrame,
    token_level: pd.DataFrame | None = None,
    baseline: str = BASELINE,
    untrained_metrics: Sequence[str] = PAPER_METRICS,
) -> pd.DataFrame:
    """The long results table: one row per (dataset, model, prompt, testset, method, metric).

    ``alignment``: rows of :func:`alignment_table` (several datasets stacked); every metric of
    ``metrics.METRICS`` it has becomes a row with its bootstrap CI, ``n`` (test-set size) and
    ``untrained_reason`` ("" unless the run is untrained: :func:`mark_untrained` against
    ``baseline`` on ``untrained_metrics``, taken afresh so the table does not depend on the
    marks an alignment file recorded). ``token_level``: rows of :func:`token_level_table`
    with a ``dataset`` column; their metrics have no CI.
    """
    if not alignment.empty:
        alignment = mark_untrained(alignment, baseline, untrained_metrics)
    rows = []
    for rec in alignment.to_dict("records"):
        keys = {k: rec[k] for k in RESULTS_KEYS}
        reason = rec.get("untrained_reason")
        reason = reason if isinstance(reason, str) else ""
        for metric in METRICS:
            if metric in rec:
                rows.append(
                    {
                        **keys,
                        "metric": metric,
                        "value": rec[metric],
                        "ci_low": rec[f"{metric}_ci_low"],
                        "ci_high": rec[f"{metric}_ci_high"],
                        "n": rec.get("n_examples"),
                        "untrained_reason": reason,
                    }
                )
    records = [] if token_level is None else token_level.to_dict("records")
    for rec in records:
        keys = {k: rec[k] for k in RESULTS_KEYS}
        for metric in TOKEN_LEVEL_METRICS:
            rows.append(
                {
                    **keys,
                    "metric": metric,
                    "value": rec[metric],
                    "ci_low": float("nan"),
                    "ci_high": float("nan"),
                    "n": rec["n_examples"],
                    "untrained_reason": "",
                }
            )
    return pd.DataFrame(rows, columns=list(RESULTS_COLUMNS))


def read_results_long(path: str | os.PathLike) -> pd.DataFrame:
    """A results_long.csv as written: floats parsed round-trip exact (so a view of it equals
    one computed from the alignment tables), ``untrained_reason`` "" where empty."""
    frame = pd.read_csv(path, **_ROUND_TRIP)
    frame["untrained_reason"] = frame["untrained_reason"].fillna("").astype(str)
    return frame


def results_long_from_files(
    alignment_paths: Sequence[str | os.PathLike],
    token_level_paths: Sequence[str | os.PathLike] = (),
    baseline: str = BASELINE,
) -> pd.DataFrame:
    """:func:`results_long` of per-dataset ``alignment_{dataset}.csv`` files and
    ``token_level_{dataset}.csv`` files (whose dataset is the file name's)."""
    alignment = [pd.read_csv(p) for p in alignment_paths]
    token_level = [
        pd.read_csv(p).assign(dataset=Path(p).stem.removeprefix("token_level_"))
        for p in token_level_paths
    ]
    return results_long(
        pd.concat(alignment, ignore_index=True) if alignment else pd.DataFrame(),
        pd.concat(token_level, ignore_index=True) if token_level else None,
        baseline,
    )
