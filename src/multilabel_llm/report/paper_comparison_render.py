"""The side-by-side pages of a paper comparison: a summary table, Markdown and HTML renderings
of every compared table, and :func:`write_comparison`, which writes them with the cells' CSV."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping

import pandas as pd

from multilabel_llm.core.io import write_csv, write_text
from multilabel_llm.report.paper_comparison import Comparison, TableComparison, printed_decimals
from multilabel_llm.report.paper_reference import (
    COMPARED,
    NOT_RUN,
    PAPER_MODEL_TEXT,
    TABLE_DIGITS,
    TABLE_NOTES,
    TABLE_SUBJECTS,
)

# ---------------------------------------------------------------------------- rendering

MARK_IN, MARK_OUT = "✓", "✗"


def _fmt(value: float, digits: int) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _cell_text(rec: Mapping, digits: int) -> tuple[str, str]:
    """(text, css class) of one grid cell: ours [CI] vs paper, and the verdict."""
    status = rec["status"]
    if status in (COMPARED, NOT_RUN):  # as precise as the paper
        digits = max(digits, printed_decimals(rec["paper_text"]))
    if math.isnan(rec["ours"]):
        ours = NOT_RUN if status == NOT_RUN else "—"
    else:
        ours = _fmt(rec["ours"], digits)
        if not math.isnan(rec["ci_low"]):
            ours += f" [{_fmt(rec['ci_low'], digits)}, {_fmt(rec['ci_high'], digits)}]"
    if status == "ours N/A":
        ours += " (N/A)"
    text = f"{ours} vs {rec['paper_text']}"
    verdict = rec["paper_in_ci"]
    if status != COMPARED:
        css = "notrun" if status == NOT_RUN else "marker"
    elif verdict is pd.NA or verdict is None:
        css = "nointerval"
    else:
        text += f" {MARK_IN if verdict else MARK_OUT}"
        css = "in" if verdict else "out"
    return text, css


def _header(column: str, metric: str) -> str:
    if metric in ("%", "kappa"):  # the column says it (Tables 1, 4, 7)
        return column
    if metric in ("n", "per example"):  # Table 1's "Annotators (per example)"
        return f"{column} ({metric})"
    return f"{column} {metric}"


def _grid(table: TableComparison) -> tuple[list[str], list[list[tuple[str, str]]], list[str]]:
    """Paper layout: header, rows of (text, css) cells, row labels."""
    digits = TABLE_DIGITS.get(table.key, 2)
    cells = table.cells
    columns = list(dict.fromkeys(zip(cells["column"], cells["metric"], strict=True)))
    rows = list(dict.fromkeys(cells["row"]))
    index = {(r["row"], r["column"], r["metric"]): r for r in cells.to_dict("records")}
    body = []
    for row in rows:
        line = []
        for column, metric in columns:
            rec = index.get((row, column, metric))
            line.append(_cell_text(rec, digits) if rec else ("", ""))
        body.append(line)
    return [_header(c, m) for c, m in columns], body, rows


def summary(comparison: Comparison) -> pd.DataFrame:
    """Per table: cells the paper reports, how many we compared, how many of those have the
    paper's value in our interval, how many are not run, and the median |diff|."""
    rows = []
    for table in comparison.tables:
        cells = table.cells
        compared = cells[cells["status"] == COMPARED]
        with_ci = compared["paper_in_ci"].dropna()
        rows.append(
            {
                "table": table.title,
                "shows": TABLE_SUBJECTS.get(table.key, ""),
                "paper": PAPER_MODEL_TEXT.get(table.key, ""),
                "ours": (table.ours_label or "produced") if table.produced else "not produced",
                "reported": int(cells["paper"].notna().sum()),
                "compared": len(compared),
                "paper_in_ci": f"{int(with_ci.sum())}/{len(with_ci)}" if len(with_ci) else "",
                "not_run": int((cells["status"] == NOT_RUN).sum()),
                "median_abs_diff": float(compared["diff"].abs().median())
                if len(compared)
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


INTRO = (
    f"Each cell: ours [95% bootstrap CI] vs the paper's printed value. {MARK_IN}: the paper's value "
    f"(± its rounding) lies in our interval; {MARK_OUT}: it does not; no mark: our table has no "
    "interval. 'not run': the paper reports the cell, this run did not produce it. N/A, N/S "
    "and - are the paper's own markers (not applicable, not supplied, not reported) and are "
    "never compared as numbers. Tidy cell-by-cell values: paper_comparison.csv."
)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _summary_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    frame = summary(comparison)
    header = [
        "Table",
        "Shows",
        "Paper",
        "Ours",
        "Reported",
        "Compared",
        "Paper in our CI",
        "Not run",
        "Median |diff|",
    ]
    rows = [
        [
            r["table"],
            r["shows"],
            r["paper"],
            r["ours"],
            str(r["reported"]),
            str(r["compared"]),
            r["paper_in_ci"] or "–",
            str(r["not_run"]),
            _fmt(r["median_abs_diff"], 3) or "–",
        ]
        for r in frame.to_dict("records")
    ]
    return header, rows


def comparison_markdown(comparison: Comparison, title: str = "Side by side with the paper") -> str:
    lines = [f"# {title}", "", INTRO, ""]
    header, rows = _summary_rows(comparison)
    lines += _md_table(header, rows)
    for table in comparison.tables:
        lines += ["", f"## {table.title}: {TABLE_SUBJECTS.get(table.key, '')}", ""]
        if not table.produced:
            lines.append("Not produced by this experiment: every cell is 'not run'.")
            continue
        if table.ours_label:
            lines += [f"Ours: {table.ours_label}. Paper: {PAPER_MODEL_TEXT[table.key]}.", ""]
        if table.key in TABLE_NOTES:
            lines += [TABLE_NOTES[table.key], ""]
        head, body, labels = _grid(table)
        lines += _md_table(
            ["", *head],
            [[lab, *[t for t, _ in line]] for lab, line in zip(labels, body, strict=True)],
        )
        if table.unmatched:
            lines += ["", "Ours without a paper counterpart: " + "; ".join(table.unmatched) + "."]
    return "\n".join(lines) + "\n"


CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; } h2 { font-size: 1.05em; margin-top: 1.6em; }
p { max-width: 70em; color: #444; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.8em; margin-top: 0.6em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f3f4f6; } td.label, th.label { text-align: left; }
td.in { background: #e6f4ea; } td.out { background: #fce8e6; }
td.notrun { background: #f1f1f1; color: #777; font-style: italic; } td.marker { color: #777; }
"""


def _html_table(header: list[str], rows: list[list[tuple[str, str]]]) -> str:
    head = "".join(
        f'<th class="label">{html.escape(h)}</th>' if k == 0 else f"<th>{html.escape(h)}</th>"
        for k, h in enumerate(header)
    )
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="{css}">{html.escape(text)}</td>'
            if css
            else f"<td>{html.escape(text)}</td>"
            for text, css in row
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def comparison_html(comparison: Comparison, title: str = "Side by side with the paper") -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(INTRO)}</p>",
    ]
    header, rows = _summary_rows(comparison)
    parts.append(
        _html_table(
            header, [[(c, "label" if k < 4 else "") for k, c in enumerate(r)] for r in rows]
        )
    )
    for table in comparison.tables:
        parts.append(
            f"<h2>{html.escape(table.title)}: {html.escape(TABLE_SUBJECTS.get(table.key, ''))}</h2>"
        )
        if not table.produced:
            parts.append("<p>Not produced by this experiment: every cell is 'not run'.</p>")
            continue
        if table.ours_label:
            parts.append(
                f"<p>Ours: {html.escape(table.ours_label)}. "
                f"Paper: {html.escape(PAPER_MODEL_TEXT[table.key])}.</p>"
            )
        if table.key in TABLE_NOTES:
            parts.append(f"<p>{html.escape(TABLE_NOTES[table.key])}</p>")
        head, body, labels = _grid(table)
        parts.append(
            _html_table(
                ["", *head],
                [[(lab, "label"), *line] for lab, line in zip(labels, body, strict=True)],
            )
        )
        if table.unmatched:
            parts.append(
                "<p>Ours without a paper counterpart: "
                + html.escape("; ".join(table.unmatched))
                + ".</p>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_comparison(
    comparison: Comparison,
    csv_path: str | os.PathLike,
    md_path: str | os.PathLike | None = None,
    html_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    cells = comparison.cells
    write_csv(csv_path, cells, index=False)
    if md_path is not None:
        write_text(md_path, comparison_markdown(comparison))
    if html_path is not None:
        write_text(html_path, comparison_html(comparison))
    return cells
