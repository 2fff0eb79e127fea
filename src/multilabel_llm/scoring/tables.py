"""Alignment tables rendered: the per-dataset alignment pages and the paper's Tables 2 and 5
(CSV, Markdown, LaTeX). Scoring lives in :mod:`multilabel_llm.scoring.alignment`.

* :func:`alignment_markdown` / :func:`alignment_latex` — an :func:`alignment_table` frame as
  one row per (model, prompt, testset, method), every metric as ``mean [ci_low, ci_high]``.
* :func:`paper_table_from_long` — the paper's layout for one model as a view of the long
  results table (:func:`multilabel_llm.scoring.alignment.results_long`): rows are methods (grouped
  baseline / test-time / supervised, plus the reference rows), columns are datasets
  (single-label first) × (NLL, L1, F1 = example-F1). A method that does not apply to a
  dataset type reads ``N/A``; a method with no distribution file reads ``—``; a supervised
  row that did not learn (:func:`multilabel_llm.scoring.alignment.mark_untrained`) reads ``untrained``
  with the reason under the table, its numbers kept in the CSV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multilabel_llm.core.metrics import LOWER_IS_BETTER, METRICS, TOKEN_LEVEL_METRICS
from multilabel_llm.scoring.alignment import (
    BASELINE,
    METRIC_TITLES,
    PAPER_METRICS,
    MethodInfo,
    results_long,
)

GROUP_TITLES = {
    "baseline": "Baseline",
    "test_time": "Test-Time",
    "supervised": "Supervised",
    "reference": "Reference",
}
NOT_APPLICABLE = "N/A"
MISSING = "—"
UNTRAINED = "untrained"


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


def _select_run(results: pd.DataFrame, model: str, prompt: str | None, testset: str | None):
    """Rows of ``model`` with ``prompt``/``testset`` (the first of each when None)."""
    sel = results[results["model"] == model] if not results.empty else results
    if prompt is None and not sel.empty:
        prompt = sorted(sel["prompt"].unique())[0]
    if testset is None and not sel.empty:
        testset = sorted(sel["testset"].unique())[0]
    if not sel.empty:
        sel = sel[(sel["prompt"] == prompt) & (sel["testset"] == testset)]
    return sel, prompt, testset


def paper_table_from_long(
    results: pd.DataFrame,
    datasets: Sequence[DatasetColumn],
    methods: Sequence[MethodInfo],
    model: str,
    prompt: str | None = None,
    testset: str | None = None,
    metrics: Sequence[str] = PAPER_METRICS,
) -> pd.DataFrame:
    """The paper layout as a view of the long results table (``scoring.alignment.
    results_long``): one row per method, per (dataset, metric) ``mean/ci_low/ci_high`` plus a
    ``{dataset}_status`` column (``ok``, ``not_applicable``, ``missing`` or ``untrained``;
    spelled out because CSV readers turn "N/A" into NaN) and ``{dataset}_note`` (the
    ``untrained_reason`` of an untrained run; its numbers are kept).

    When a model has several prompts or test sets, ``prompt``/``testset`` pick one (the first
    otherwise).
    """
    sel, prompt, testset = _select_run(results, model, prompt, testset)
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
            elif hit.iloc[0]["untrained_reason"]:
                status, note = "untrained", str(hit.iloc[0]["untrained_reason"])
            row[f"{ds.name}_status"] = status
            row[f"{ds.name}_note"] = note
            scored = status in ("ok", "untrained")
            for m in metrics:
                found = hit[hit["metric"] == m].iloc[0] if scored else None
                for suffix, column in (
                    ("", "value"),
                    ("_ci_low", "ci_low"),
                    ("_ci_high", "ci_high"),
                ):
                    value = float(found[column]) if scored else float("nan")
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
    """:func:`paper_table_from_long` of stacked per-dataset alignment tables (wide rows),
    the untrained marks taken afresh against the ``baseline`` method on ``metrics``."""
    sel, prompt, testset = _select_run(alignment, model, prompt, testset)
    results = results_long(sel, baseline=baseline, untrained_metrics=metrics)
    return paper_table_from_long(results, datasets, methods, model, prompt, testset, metrics)


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


# ---------------------------------------------------------------------------- pages


def alignment_page_markdown(table: pd.DataFrame, display_name: str, digits: int = 2) -> str:
    """The Markdown page of one dataset's alignment table."""
    return (
        f"# Distribution alignment: {display_name}\n\n"
        + "Mean [95% bootstrap CI]; rows in parentheses are N/A in the paper.\n\n"
        + alignment_markdown(table, digits=digits)
    )


def token_level_markdown(
    table: pd.DataFrame, display_name: str, threshold: float, digits: int = 2
) -> str:
    """The Markdown page of one dataset's token-level table (``scoring.alignment.
    token_level_table``)."""
    header = ["Model", "Test set", "Method", "n", *TOKEN_LEVEL_METRICS]
    header += ["all-zero rows", "explored mass"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rec in table.to_dict("records"):
        cells = [rec["model"], rec["testset"], rec["display_name"], str(rec["n_examples"])]
        cells += [f"{rec[m]:.{digits}f}" for m in TOKEN_LEVEL_METRICS]
        for key in ("zero_rows", "explored_mass"):  # explored mass: path searches only
            value = rec.get(key, float("nan"))
            cells.append("—" if value != value else f"{value:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"# Token-level metrics (Praharaj & Kasundra 2025): {display_name}\n\n"
        f"Against the aggregate labels; micro-F1 and Hamming loss at q >= {threshold}. "
        "All-zero rows: share of examples with every probability 0; explored mass: mean path "
        "mass the search explored per example (path searches only).\n\n" + "\n".join(lines) + "\n"
    )


def paper_table_caption(title: str, table: pd.DataFrame) -> str:
    """The caption of a paper table: its run and how to read its cells."""
    where = f"model {table.attrs['model']}, prompt {table.attrs['prompt']}, test set "
    where += f"{table.attrs['testset']}"
    return (
        f"{title}: {where}. Mean [95% bootstrap CI] against the human distribution; "
        "F1 is example-F1. N/A: not applicable to single-label datasets; —: not run; "
        "untrained: a supervised method that learned nothing usable (reasons under the table)."
    )
