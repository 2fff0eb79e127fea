"""File front ends of the report stage: result tables and analysis CSVs in, the report's
tables, figures, explorer pages and paper comparison out (rules ``mechanism_table``,
``render_table``, ``figure``, ``write_explorer``, ``compare_to_paper``).

Each reads its inputs, calls :mod:`.html`, :mod:`.figure_registry`, :mod:`.explorer` or
the paper comparison and writes its outputs atomically; none imports snakemake, so a stage
runs from a notebook with plain paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from multilabel_llm.analyses.summaries import label_order_table
from multilabel_llm.core.io import write_csv
from multilabel_llm.core.metrics import MetricSettings
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.canonical import load_canonical
from multilabel_llm.report.explorer import MethodDistribution, explorer_data, write_explorer
from multilabel_llm.report.html import read_tables, render_table
from multilabel_llm.report.paper_comparison import compare_tables
from multilabel_llm.report.paper_comparison_render import write_comparison
from multilabel_llm.report.paper_reference import read_reference

log = logging.getLogger(__name__)

PathArg = str | os.PathLike


def collect_table(
    paths: Sequence[PathArg], output: PathArg, *, table: str, run_keys: Sequence[Mapping]
) -> pd.DataFrame:
    """Stack per-run analysis CSVs into one paper table (Tables 4, 6, 7, …); ``run_keys[i]``
    fills the columns file ``i`` lacks."""
    frame = read_tables(paths, run_keys)
    if table == "table7" and not frame.empty:
        frame = label_order_table(frame)
    write_csv(output, frame, index=False)
    return frame


def render_table_page(
    csv: PathArg,
    html: PathArg,
    *,
    title: str,
    caption: str,
    digits: int,
    pivot: Mapping | None,
    columns: Sequence[str] | None,
) -> None:
    """One CSV table → a standalone HTML page for the report (an empty ``pivot`` or
    ``columns`` config = none)."""
    render_table(
        csv,
        html,
        title=title,
        caption=caption,
        digits=digits,
        pivot=pivot or None,
        columns=columns or None,
    )


def plot_figure(inputs: Sequence[PathArg], params: Mapping, png: PathArg, pdf: PathArg) -> None:
    """Stacked analysis CSVs → one paper figure (PNG + PDF); ``params["kind"]`` names it in
    the figure registry (:mod:`.figure_registry`)."""
    # matplotlib and seaborn: imported by the figure jobs only, off the tables' light path
    from multilabel_llm.report.figure_registry import draw_figure

    draw_figure(params["kind"], inputs, params, png, pdf)


def write_explorer_page(
    examples: PathArg,
    traces: PathArg,
    dist_paths: Sequence[PathArg],
    alignment: Sequence[PathArg],
    html: PathArg,
    *,
    methods: Sequence[Mapping],
    run: Mapping[str, str],
    metric: Mapping,
) -> int:
    """One traced run's traces + distributions → its example explorer page; ``methods[i]``
    (``method``, ``display_name``, ``model``) describes ``dist_paths[i]``. Returns its size."""
    dataset = load_canonical(Path(examples).parent)
    meta, trace_list = read_traces(traces)
    shown = [
        MethodDistribution(spec["method"], spec["display_name"], pd.read_parquet(path), str(path))
        for spec, path in zip(methods, dist_paths, strict=True)
    ]
    scores = pd.read_csv(alignment[0]) if alignment else None
    data = explorer_data(
        meta,
        trace_list,
        dataset,
        shown,
        run=run,
        alignment=scores,
        method_models={spec["method"]: spec["model"] for spec in methods},
        settings=MetricSettings(**metric),
        source=str(traces),
    )
    size = write_explorer(html, data)
    log.info(
        "explorer of %d examples, %d methods: %.2f MB", len(trace_list), len(shown), size / 1e6
    )
    return size


def compare_to_paper(
    inputs: Mapping[str, PathArg | Sequence[PathArg]],
    *,
    tables: Sequence[str],
    datasets: Sequence[str],
    models: Sequence[str],
    roles: Mapping,
    csv: PathArg,
    md: PathArg,
    html: PathArg,
) -> pd.DataFrame:
    """The run's paper tables (``inputs[name]`` for each of ``tables``) side by side with the
    paper's own numbers (``inputs["reference"]``: inputs, so a corrected transcription reruns
    the comparison) → csv, md, html."""
    reference = read_reference(inputs["reference"])
    produced = {name: inputs[name] for name in tables}
    comparison = compare_tables(produced, reference, datasets=datasets, models=models, roles=roles)
    cells = write_comparison(comparison, csv, md, html)
    for table in comparison.tables:
        counts = table.cells["status"].value_counts().to_dict()
        log.info("%s: %s", table.title, counts)
        for item in table.unmatched:
            log.info("%s: ours without a paper counterpart: %s", table.title, item)
    log.info("%d cells written to %s", len(cells), csv)
    return cells
