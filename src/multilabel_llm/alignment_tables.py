"""Alignment tables: score distribution files against the human distribution, with
bootstrap CIs, and lay them out as the paper's Tables 2 and 5 (CSV, Markdown, LaTeX).

Two products:
* :func:`alignment_table` — one row per (model, prompt, testset, method) on one dataset,
  every metric of ``metrics.METRICS`` as ``mean, ci_low, ci_high``.
* :func:`paper_table` — the paper's layout for one model: rows are methods (grouped
  baseline / test-time / supervised, plus the reference rows), columns are datasets
  (single-label first) × (NLL, L1, F1 = example-F1). A method that does not apply to a
  dataset type reads ``N/A``; a method with no distribution file reads ``—``.
Method rows take their names from the method config (``display_name``, ``group``,
``order``, ``applies_to``), so any distribution file (probes, Demux, SFT) becomes a row.

A supervised row that did not learn is marked *untrained* (:func:`mark_untrained`) instead of
printing numbers that look like results: when it beats the constant baseline on none of the
table's metrics, when its output is the same for every test example, or when its training
said so (a ``note`` column in its distribution file, e.g. a degenerate probe). The numbers
stay in the CSV; the Markdown/LaTeX cells read ``untrained`` with the reason under the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .datasets.canonical import CanonicalDataset
from .estimators import align_to_ids, validate_distribution
from .metrics import LOWER_IS_BETTER, METRICS, MetricSettings, bootstrap_ci, score_examples

GROUP_ORDER = ("baseline", "test_time", "supervised", "reference")
GROUP_TITLES = {
    "baseline": "Baseline",
    "test_time": "Test-Time",
    "supervised": "Supervised",
    "reference": "Reference",
}
METRIC_TITLES = {
    "nll": "NLL ↓",
    "l1": "L1 ↓",
    "example_f1": "F1 ↑",
    "micro_f1": "Micro-F1 ↑",
    "macro_f1": "Macro-F1 ↑",
}
PAPER_METRICS = ("nll", "l1", "example_f1")
NOT_APPLICABLE = "N/A"
MISSING = "—"
UNTRAINED = "untrained"
BASELINE = "constant"  # the method slot supervised rows must beat (config/method/constant.yaml)
CONSTANT_SPREAD = 1e-6  # output std (max over labels) below this: the same answer everywhere


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


def reference_distribution(dataset: CanonicalDataset, ids: Sequence[str]):
    """``(h, gold, n_gold_fallback)`` for ``ids``: the human distribution of eq. 1, with the
    aggregate 0/1 labels standing in for examples without annotators (NaN rows)."""
    h = np.array(dataset.human_distribution(ids).to_numpy(dtype=float))  # writable copy
    gold = dataset.gold_matrix(ids).to_numpy(dtype=float)
    nan_rows = np.isnan(h).any(axis=1)
    h[nan_rows] = gold[nan_rows]
    return h, gold, int(nan_rows.sum())


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


def untrained_notes(rows: Sequence[tuple[str, str]]) -> list[str]:
    """Footnote lines for the marked rows: ``(what, reason)`` pairs."""
    if not rows:
        return []
    head = (
        f"{UNTRAINED}: a supervised method that learned nothing usable here (beats the constant "
        "baseline on no metric, one output for every example, or so reported by its training, "
        "e.g. under the demo's small training budget); its numbers are in the CSV."
    )
    return [head, *[f"- {what}: {reason}" for what, reason in rows]]


# ---------------------------------------------------------------------------- formatting


def format_number(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}f}"


def format_cell(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    """``"mean [lo, hi]"``."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    return (
        f"{format_number(mean, digits)} [{format_number(lo, digits)}, {format_number(hi, digits)}]"
    )


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def latex_escape(text: str) -> str:
    text = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return text.replace("↓", r"$\downarrow$").replace("↑", r"$\uparrow$").replace("—", "--")


def alignment_markdown(
    frame: pd.DataFrame, metrics: Sequence[str] = METRICS, digits: int = 2
) -> str:
    header = ["Model", "Prompt", "Test set", "Method", "n", *[METRIC_TITLES[m] for m in metrics]]
    rows = []
    for rec in frame.to_dict("records"):
        cells = _row_cells(rec, metrics, digits)
        if not rec.get("applicable", True):
            cells = [f"({c})" for c in cells]  # scored, but the paper reports N/A
        rows.append(
            [
                rec["model"],
                rec["prompt"],
                rec["testset"],
                rec["display_name"],
                str(rec["n_examples"]),
                *cells,
            ]
        )
    notes = untrained_notes(_marked(frame))
    return _markdown(header, rows) + ("\n" + "\n".join(notes) + "\n" if notes else "")


def _row_cells(rec: Mapping, metrics: Sequence[str], digits: int) -> list[str]:
    if rec.get("untrained") is True:
        return [UNTRAINED] * len(metrics)
    return [format_cell(rec[m], rec[f"{m}_ci_low"], rec[f"{m}_ci_high"], digits) for m in metrics]


def _marked(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(row label, reason) of the untrained rows of an alignment frame."""
    if frame.empty or "untrained" not in frame.columns:
        return []
    return [
        (
            f"{r['display_name']} ({r['model']}, {r['prompt']}, {r['testset']})",
            r["untrained_reason"],
        )
        for r in frame[frame["untrained"] == True].to_dict("records")  # noqa: E712
    ]


def alignment_latex(
    frame: pd.DataFrame, metrics: Sequence[str] = METRICS, digits: int = 2, caption: str = ""
) -> str:
    header = ["Model", "Prompt", "Test set", "Method", "n", *[METRIC_TITLES[m] for m in metrics]]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{llll r" + "c" * len(metrics) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for rec in frame.to_dict("records"):
        cells = _row_cells(rec, metrics, digits)
        row = [
            rec["model"],
            rec["prompt"],
            rec["testset"],
            rec["display_name"],
            str(rec["n_examples"]),
            *cells,
        ]
        lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += _latex_notes(_marked(frame))
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- paper layout


@dataclass(frozen=True)
class DatasetColumn:
    name: str
    display_name: str
    multilabel: bool


def paper_table(
    alignment: pd.DataFrame,
    datasets: Sequence[DatasetColumn],
    methods: Sequence[MethodInfo],
    model: str,
    prompt: str | None = None,
    testset: str | None = None,
    metrics: Sequence[str] = PAPER_METRICS,
    baseline: str = BASELINE,
) -> pd.DataFrame:
    """Long-to-wide: one row per method, per (dataset, metric) ``mean/ci_low/ci_high`` plus a
    ``{dataset}_status`` column (``ok``, ``not_applicable``, ``missing`` or ``untrained``;
    spelled out because CSV readers turn "N/A" into NaN) and ``{dataset}_note`` (why a row is
    untrained: :func:`mark_untrained` against the ``baseline`` method on ``metrics``; the
    numbers are kept).

    ``alignment`` is the concatenation of the per-dataset alignment tables; when a model has
    several prompts or test sets, ``prompt``/``testset`` pick one (the first otherwise).
    """
    sel = alignment[alignment["model"] == model] if not alignment.empty else alignment
    if prompt is None and not sel.empty:
        prompt = sorted(sel["prompt"].unique())[0]
    if testset is None and not sel.empty:
        testset = sorted(sel["testset"].unique())[0]
    if not sel.empty:
        sel = sel[(sel["prompt"] == prompt) & (sel["testset"] == testset)]
        sel = mark_untrained(sel, baseline, metrics)
    datasets = sorted(datasets, key=lambda d: d.multilabel)  # single-label first, stable
    rows = []
    for info in sorted(methods, key=MethodInfo.sort_key):
        row = {
            "group": GROUP_TITLES[info.group],
            "method": info.name,
            "display_name": info.display_name,
        }
        for ds in datasets:
            hit = (
                sel[(sel["dataset"] == ds.name) & (sel["method"] == info.name)]
                if not sel.empty
                else sel
            )
            status, note = "ok", ""
            if not info.applies(ds.multilabel):
                status = "not_applicable"
            elif hit.empty:
                status = "missing"
            elif bool(hit.iloc[0]["untrained"]):
                status, note = "untrained", str(hit.iloc[0]["untrained_reason"])
            row[f"{ds.name}_status"] = status
            row[f"{ds.name}_note"] = note
            scored = status in ("ok", "untrained")
            for m in metrics:
                for suffix in ("", "_ci_low", "_ci_high"):
                    value = float(hit.iloc[0][f"{m}{suffix}"]) if scored else float("nan")
                    row[f"{ds.name}_{m}{suffix}"] = value
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(
        model=model,
        prompt=prompt,
        testset=testset,
        datasets=[d.__dict__ for d in datasets],
        metrics=list(metrics),
    )
    return table


def _best_rows(
    table: pd.DataFrame, methods: Sequence[MethodInfo], column: str, metric: str, status: str
):
    """Row positions holding the best mean of ``column`` (reference and untrained rows
    excluded)."""
    ref = {m.name for m in methods if m.group == "reference"}
    values = table[column].where(~table["method"].isin(ref) & (table[status] == "ok"))
    if values.isna().all():
        return set()
    best = values.min() if LOWER_IS_BETTER[metric] else values.max()
    return set(np.flatnonzero(np.isclose(values.to_numpy(dtype=float), best, rtol=0, atol=1e-12)))


def _paper_cells(table, methods, datasets, metrics, digits, bold):
    cells = [[] for _ in range(len(table))]
    for ds in datasets:
        for m in metrics:
            col = f"{ds.name}_{m}"
            best = _best_rows(table, methods, col, m, f"{ds.name}_status")
            for r, rec in enumerate(table.to_dict("records")):
                status = rec[f"{ds.name}_status"]
                if status == "not_applicable":
                    cells[r].append(NOT_APPLICABLE)
                elif status == "missing":
                    cells[r].append(MISSING)
                elif status == "untrained":
                    cells[r].append(UNTRAINED)
                else:
                    text = format_cell(
                        rec[col], rec[f"{col}_ci_low"], rec[f"{col}_ci_high"], digits
                    )
                    cells[r].append(bold(text) if r in best else text)
    return cells


def _columns(table: pd.DataFrame):
    datasets = [DatasetColumn(**d) for d in table.attrs["datasets"]]
    return datasets, list(table.attrs["metrics"])


def paper_table_markdown(
    table: pd.DataFrame, methods: Sequence[MethodInfo], digits: int = 2, title: str = ""
) -> str:
    datasets, metrics = _columns(table)
    header = [
        "",
        "Method",
        *[f"{d.display_name} {METRIC_TITLES[m]}" for d in datasets for m in metrics],
    ]
    cells = _paper_cells(table, methods, datasets, metrics, digits, lambda s: f"**{s}**")
    rows, previous = [], None
    for rec, row_cells in zip(table.to_dict("records"), cells, strict=True):
        group = rec["group"] if rec["group"] != previous else ""
        previous = rec["group"]
        rows.append([group, rec["display_name"], *row_cells])
    head = f"{title}\n\n" if title else ""
    notes = untrained_notes(_paper_marked(table, datasets))
    return head + _markdown(header, rows) + ("\n" + "\n".join(notes) + "\n" if notes else "")


def _paper_marked(table: pd.DataFrame, datasets: Sequence[DatasetColumn]):
    """(row label, reason) of the untrained cells of a paper table."""
    return [
        (f"{rec['display_name']} on {ds.display_name}", rec.get(f"{ds.name}_note", ""))
        for rec in table.to_dict("records")
        for ds in datasets
        if rec.get(f"{ds.name}_status") == "untrained"
    ]


def _latex_notes(marked) -> list[str]:
    notes = untrained_notes(marked)
    if not notes:
        return []
    return [r"\par\smallskip\footnotesize " + latex_escape(notes[0])] + [
        r"\\ " + latex_escape(line) for line in notes[1:]
    ]


def _multicolumn(n: int, text: str) -> str:
    return f"\\multicolumn{{{n}}}{{c}}{{{text}}}"


def paper_table_latex(
    table: pd.DataFrame,
    methods: Sequence[MethodInfo],
    digits: int = 2,
    caption: str = "",
    label: str = "",
) -> str:
    datasets, metrics = _columns(table)
    n_metric = len(metrics)
    single = [d for d in datasets if not d.multilabel]
    multi = [d for d in datasets if d.multilabel]
    lines = [
        r"\begin{table*}[t]",
        r"\centering",
        r"\scriptsize",
        r"\setlength{\tabcolsep}{3pt}",
        r"\begin{tabular}{ll" + "c" * (n_metric * len(datasets)) + "}",
        r"\toprule",
    ]
    kinds = []
    if single:
        kinds.append(_multicolumn(n_metric * len(single), "Single-Label Datasets"))
    if multi:
        kinds.append(_multicolumn(n_metric * len(multi), "Multi-Label Datasets"))
    lines.append(" & & " + " & ".join(kinds) + r" \\")
    lines.append(
        " & & "
        + " & ".join(_multicolumn(n_metric, latex_escape(d.display_name)) for d in datasets)
        + r" \\"
    )
    rules = [
        f"\\cmidrule(lr){{{3 + k * n_metric}-{2 + (k + 1) * n_metric}}}"
        for k in range(len(datasets))
    ]
    lines.append(" ".join(rules))
    lines.append(
        " & & "
        + " & ".join(latex_escape(METRIC_TITLES[m]) for _ in datasets for m in metrics)
        + r" \\"
    )
    lines.append(r"\midrule")
    cells = _paper_cells(table, methods, datasets, metrics, digits, lambda s: s)
    bold_cells = _paper_cells(table, methods, datasets, metrics, digits, lambda s: "\x00" + s)
    previous = None
    for rec, row_cells, marks in zip(table.to_dict("records"), cells, bold_cells, strict=True):
        if previous is not None and rec["group"] != previous:
            lines.append(r"\midrule")
        group = latex_escape(rec["group"]) if rec["group"] != previous else ""
        previous = rec["group"]
        out = [
            r"\textbf{" + latex_escape(c) + "}" if mark.startswith("\x00") else latex_escape(c)
            for c, mark in zip(row_cells, marks, strict=True)
        ]
        lines.append(" & ".join([group, latex_escape(rec["display_name"]), *out]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += _latex_notes(_paper_marked(table, datasets))
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines.append(r"\end{table*}")
    return "\n".join(lines) + "\n"
