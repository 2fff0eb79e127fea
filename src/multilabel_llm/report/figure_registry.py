"""The figure registry: figure kind → its drawing from the stacked, selected analysis rows, and
:func:`draw_figure`, which reads the analysis CSVs, draws a figure and saves it."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from multilabel_llm.analyses.summaries import base_vs_instruct, probe_summary, select_rows
from multilabel_llm.data.label_steps import STEP_COLUMNS
from multilabel_llm.report.figure_base import Plot
from multilabel_llm.report.html import read_tables
from multilabel_llm.report.plots import (
    figure_base_vs_instruct,
    figure_binary_variants,
    figure_example_steps,
    figure_first_step_sorted,
    figure_label_position_accuracy,
    figure_multilabel_icl,
    figure_probes,
    figure_second,
    figure_second_position,
    figure_step_quantity,
    figure_top_two_box,
)

log = logging.getLogger(__name__)

# One entry per figure kind: the stacked, selected analysis rows and the figure's params
# (``models``, ``datasets``, ``max_step``, ``model_info``; multilabel_llm.workflow.dag.WorkflowDag.figure_params) → a Plot.
# An empty selection becomes an empty frame with the columns the figure reads.


def _or_empty(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return frame if not frame.empty else pd.DataFrame(columns=list(columns))


def _order(params: Mapping) -> dict:
    return {"models": params["models"], "datasets": params["datasets"]}


def _step_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return _or_empty(frame, ["dataset", "model", *STEP_COLUMNS])


def _example_steps(frame: pd.DataFrame, params: Mapping) -> Plot:
    frame = _or_empty(frame, ["id", "text_out", "step", "label", "prob", "generated"])
    title = "" if frame.empty else f"{frame['dataset'].iloc[0]}, {frame['model'].iloc[0]}"
    if not frame.empty:
        title += f", example {frame['id'].iloc[0]}: {frame['text_out'].iloc[0]!r}"
    return figure_example_steps(frame, title=title[:160])


def _binary_variants(frame: pd.DataFrame, params: Mapping) -> Plot:
    if not frame.empty and "display_name" in frame.columns:
        frame = frame.assign(method=frame["display_name"].fillna(frame["method"]))
    return figure_binary_variants(frame)


def _base_vs_instruct(frame: pd.DataFrame, params: Mapping) -> Plot:
    table = (
        base_vs_instruct(frame, params["model_info"])
        if not frame.empty
        else pd.DataFrame(columns=["family", "variant", "method", "metric", "value"])
    )
    return figure_base_vs_instruct(table)


def _probes(frame: pd.DataFrame, params: Mapping) -> Plot:
    scores = (
        probe_summary(frame)
        if not frame.empty
        else pd.DataFrame(columns=["dataset", "model", "variant", "micro_f1"])
    )
    return figure_probes(scores, **_order(params))


FIGURES: dict[str, Callable[[pd.DataFrame, Mapping], Plot]] = {
    "fig1": _example_steps,
    "fig2": lambda f, p: figure_step_quantity(
        _step_rows(f), "top_prob", max_step=p["max_step"], **_order(p)
    ),
    "fig3": lambda f, p: figure_second(_step_rows(f), p["max_step"], **_order(p)),
    "fig4": lambda f, p: figure_first_step_sorted(
        _or_empty(f, ["dataset", "model", "id", "rank", "prob"]), **_order(p)
    ),
    "fig5": lambda f, p: figure_label_position_accuracy(
        _or_empty(f, ["dataset", "model", "position", "accuracy"]), max_position=p["max_step"]
    ),
    "fig6": lambda f, p: figure_multilabel_icl(
        _or_empty(
            f, ["dataset", "model", "multilabel_ratio", "n", "n_multilabel", "pct_multilabel"]
        )
    ),
    "fig7": _probes,
    "fig8": _binary_variants,
    "fig9": lambda f, p: figure_top_two_box(_step_rows(f), p["max_step"], **_order(p)),
    "fig10": lambda f, p: figure_step_quantity(
        _step_rows(f), "entropy_bits", max_step=p["max_step"], **_order(p)
    ),
    "fig11": lambda f, p: figure_second_position(
        _or_empty(f, ["dataset", "model", "position", "count"]), **_order(p)
    ),
    "fig12": _base_vs_instruct,
}


def figure_plot(kind: str, frame: pd.DataFrame, params: Mapping) -> Plot:
    """The figure ``kind`` (a :data:`FIGURES` key) of the selected analysis rows ``frame``."""
    if kind not in FIGURES:
        raise ValueError(f"unknown figure {kind!r}; known figures: {list(FIGURES)}")
    return FIGURES[kind](frame, params)


def draw_figure(
    kind: str,
    inputs: Sequence[str | os.PathLike],
    params: Mapping,
    png: str | os.PathLike,
    pdf: str | os.PathLike,
) -> Plot:
    """Stack the analysis CSVs ``inputs`` (``params["run_keys"]`` fill the columns a file
    lacks), keep the rows ``params["select"]`` allows, draw figure ``kind``, save PNG + PDF."""
    tables = read_tables(inputs, params["run_keys"])
    frame = select_rows(tables, **params["select"])
    plot = figure_plot(kind, frame, params)
    plot.save(png, pdf)
    log.info("%s: %d rows. %s", kind, len(frame), plot.caption)
    return plot
