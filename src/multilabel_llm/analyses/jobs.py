"""File front ends of the analysis stage: one run's traces (or attention rows) in, its
analysis CSVs out (rules ``analyze_traces``, ``analyze_attention``, ``mechanism_table``).

Each reads its inputs, calls :mod:`.run_tables` / :mod:`.summaries` and writes its outputs
atomically; none imports snakemake, so a stage runs from a notebook with plain paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from multilabel_llm.analyses.run_tables import TRACE_ANALYSES, tag, trace_analyses
from multilabel_llm.analyses.summaries import attention_summary
from multilabel_llm.core.io import write_csv
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.canonical import load_canonical
from multilabel_llm.data.prompts import order_labels

log = logging.getLogger(__name__)

PathArg = str | os.PathLike


def analyze_traces(
    traces: PathArg,
    examples: PathArg,
    outputs: Mapping[str, PathArg],
    keys: Mapping[str, str],
    *,
    label_order: str,
    seed: int,
    multilabel_ratio: float,
) -> dict[str, pd.DataFrame]:
    """One trace file → the §4/§D analysis CSVs (``outputs[name]`` for every name of
    ``TRACE_ANALYSES``), each tagged with ``keys`` (dataset, model, prompt, testset)."""
    meta, trace_list = read_traces(traces)
    dataset = load_canonical(Path(examples).parent)
    gold = dict(zip(dataset.examples["id"].astype(str), dataset.examples["labels"], strict=True))
    # the order the instruction lists the labels in: the engine's record if it kept one
    prompt_order = meta.info.get("prompt_labels") or order_labels(meta.labels, label_order, seed)
    log.info("%d traces, labels %s, prompt order %s", len(trace_list), meta.labels, prompt_order)
    human = {str(i): row for i, row in dataset.human_distribution().to_dict(orient="index").items()}
    tables = trace_analyses(
        trace_list,
        meta.labels,
        gold,
        prompt_order,
        human=human,
        label_format=meta.info.get("label_format"),
    )
    tables["multilabel_rate"] = tag(tables["multilabel_rate"], multilabel_ratio=multilabel_ratio)
    tables["label_order"] = tag(tables["label_order"], label_order=label_order, seed=seed)
    for name in TRACE_ANALYSES:
        write_csv(outputs[name], tag(tables[name], **keys), index=False)
        log.info("%s: %d rows", name, len(tables[name]))
    _log_coverage(tables["coverage"])
    return tables


def _log_coverage(coverage: pd.DataFrame) -> None:
    """What each analysis left out (also in coverage.csv)."""
    for row in coverage.itertuples(index=False):
        log.info(
            "%s uses %d of %d outputs (dropped: %d unparsed, %d without a label step, %d with "
            "fewer than two labels)",
            row.analysis,
            row.n_used,
            row.n_outputs,
            row.n_dropped_unparsed,
            row.n_dropped_no_label_step,
            row.n_dropped_fewer_than_two_labels,
        )
    if len(coverage):
        first = coverage.iloc[0]
        log.info(
            "label steps left out: %d repeats, %d of labels the output does not name; %d "
            "outputs went on with an item outside the label set; %d cut off after their last "
            "label (position cut_off)",
            first["n_repeat_steps"],
            first["n_unnamed_steps"],
            first["n_went_on_outside"],
            first["n_cut_off_last"],
        )


def summarize_attention(
    attention: PathArg, output: PathArg, keys: Mapping[str, str], *, min_step: int | None
) -> pd.DataFrame:
    """One attention.csv (engine) → its Table 6 summary row, tagged with ``keys``."""
    frame = pd.read_csv(attention)
    try:
        summary = attention_summary(frame, min_step=min_step)
    except ValueError as err:
        raise ValueError(f"{attention}: {err}") from None
    write_csv(output, tag(summary, **keys), index=False)
    return summary
