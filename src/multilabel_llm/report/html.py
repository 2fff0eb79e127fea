"""Turn result tables into small self-contained HTML pages for the Snakemake report.

Snakemake's HTML report shows an ``.html`` result in an iframe, so each table becomes one
standalone page (inline CSS, no scripts) with its title and caption above it.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence

import pandas as pd

from multilabel_llm.core.io import write_text

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; margin-bottom: 0.3em; }
p.caption { max-width: 60em; color: #444; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin-top: 0.8em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f4f6; }
td.text, th.text { text-align: left; }
p.empty { color: #a33; font-style: italic; }
"""


def _cell(value, digits: int) -> tuple[str, bool]:
    """Formatted value and whether it is text (left aligned)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), True
    if isinstance(value, int):
        return str(value), False
    if isinstance(value, float):
        return f"{value:.{digits}f}", False
    return str(value), True


def frame_to_html(
    frame: pd.DataFrame, title: str, caption: str = "", digits: int = 2, index: bool = False
) -> str:
    """A standalone HTML page with ``frame`` as a table; NaN shows as an en dash."""
    if index:
        frame = frame.reset_index()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if caption:
        parts.append(f'<p class="caption">{html.escape(caption)}</p>')
    if frame.empty:
        parts.append('<p class="empty">No rows: nothing was configured for this table.</p>')
    else:
        head = "".join(
            f'<th class="text">{html.escape(str(c))}</th>'
            if frame[c].dtype == object
            else f"<th>{html.escape(str(c))}</th>"
            for c in frame.columns
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
        for record in frame.itertuples(index=False):
            cells = []
            for value in record:
                value = value.item() if hasattr(value, "item") else value
                text, is_text = _cell(value, digits)
                cls = ' class="text"' if is_text else ""
                cells.append(f"<td{cls}>{html.escape(text)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def pivot_for_report(
    frame: pd.DataFrame, index: Sequence[str] | str, columns: Sequence[str] | str, values: str
) -> pd.DataFrame:
    """Wide layout as in the paper (e.g. Table 4: datasets × models); column levels joined."""
    wide = frame.pivot_table(
        index=index, columns=columns, values=values, aggfunc="first", sort=False
    )
    if isinstance(wide.columns, pd.MultiIndex):
        wide.columns = [" / ".join(str(x) for x in col) for col in wide.columns]
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index()


def render_table(
    csv_path: str | os.PathLike,
    html_path: str | os.PathLike,
    title: str,
    caption: str = "",
    digits: int = 2,
    pivot: dict | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV table, optionally keep ``columns`` / pivot it, and write the HTML page.

    ``columns`` lists the columns to show (those absent are skipped); ``pivot`` is
    ``{"index": ..., "columns": ..., "values": ...}``. An empty CSV (header only
    or no bytes) renders as an explicit "no rows" page.
    """
    try:
        frame = pd.read_csv(csv_path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    if columns and not frame.empty:
        # keep the listed columns that exist: upstream tables may grow or drop extras
        keep = [c for c in columns if c in frame.columns]
        if not keep:
            raise ValueError(
                f"{csv_path}: none of the columns {list(columns)} (have {list(frame)})"
            )
        frame = frame[keep]
    if pivot and not frame.empty:
        frame = pivot_for_report(frame, **pivot)
    write_text(html_path, frame_to_html(frame, title, caption, digits=digits))
    return frame


def read_tables(
    paths: Sequence[str | os.PathLike], keys: Sequence[dict] | None = None
) -> pd.DataFrame:
    """Stack CSVs; ``keys[i]`` (e.g. ``{"dataset": ..., "model": ...}``) fills columns that
    file ``i`` lacks. Empty files are skipped, so a run with nothing to report adds no rows."""
    paths = list(paths)
    if keys is not None and len(keys) != len(paths):
        raise ValueError(f"{len(paths)} tables but {len(keys)} key sets")
    frames = []
    for i, path in enumerate(paths):
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue
        for pos, (name, value) in enumerate((keys[i] if keys else {}).items()):
            if name not in frame.columns:
                frame.insert(pos, name, value)
        frames.append(frame)
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
