"""File front-ends of the analysis stages: paths in, files out, one function per workflow
script (workflow/scripts/*.py only hand Snakemake's slots to these).

Each function reads its inputs, calls the library (estimators, alignment_scoring,
alignment_tables, analyses) and writes its outputs atomically; none imports snakemake, so
the same stage runs from a notebook or the command line with plain paths.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from multilabel_llm.analyses import mechanisms as analyses
from multilabel_llm.core.io import read_id_list, read_json, write_csv, write_parquet, write_text
from multilabel_llm.core.metrics import MetricSettings
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.canonical import load_canonical
from multilabel_llm.data.prompts import order_labels
from multilabel_llm.methods.estimators import estimate, fit_platt_on_calibration, platt_settings
from multilabel_llm.scoring.alignment import (
    AlignmentEntry,
    BootstrapSettings,
    MethodInfo,
    alignment_table,
    read_results_long,
    results_long_from_files,
    token_level_table,
)
from multilabel_llm.scoring.tables import (
    DatasetColumn,
    alignment_latex,
    alignment_page_markdown,
    paper_table_caption,
    paper_table_from_long,
    paper_table_latex,
    paper_table_markdown,
    token_level_markdown,
)

log = logging.getLogger(__name__)

PathArg = str | os.PathLike


def _testset_ids(testsets: Sequence[str], id_paths: Sequence[PathArg]) -> dict[str, list[str]]:
    return {t: read_id_list(p) for t, p in zip(testsets, id_paths, strict=True)}


# ---------------------------------------------------------------------------- estimate


def estimate_method(
    kind: str, settings: Mapping, inputs: Mapping[str, PathArg], output: PathArg, method: str = ""
) -> pd.DataFrame:
    """One distribution method → ``output`` (parquet). ``inputs``: ``meta`` and ``ids``, plus
    what ``kind`` reads: ``traces``, ``unary``, ``binary``; ``compare_to_none_platt`` also
    ``examples``, ``calibration_ids`` and ``calibration_traces`` (a held-out test set)."""
    settings = dict(settings)
    meta = read_json(inputs["meta"])
    labels, multilabel = list(meta["labels"]), bool(meta["multilabel"])
    ids = read_id_list(inputs["ids"])
    log.info("%s (%s) on %d ids of %s", method, kind, len(ids), inputs["ids"])
    traces = read_traces(inputs["traces"]) if "traces" in inputs else None
    unary = pd.read_parquet(inputs["unary"]) if "unary" in inputs else None
    binary = pd.read_parquet(inputs["binary"]) if "binary" in inputs else None
    scaler = None
    if kind == "compare_to_none_platt":
        scaler = fit_platt_on_calibration(
            load_canonical(Path(inputs["examples"]).parent),
            read_id_list(inputs["calibration_ids"]),
            read_traces(inputs["calibration_traces"]),
            ids,
            platt_settings(settings),
            source=str(inputs["calibration_traces"]),
            scored_source=str(inputs["ids"]),
        )
    source = inputs.get("traces") or inputs.get("unary") or inputs.get("binary") or inputs["ids"]
    frame = estimate(
        kind,
        settings,
        ids,
        labels,
        multilabel,
        traces=traces,
        unary=unary,
        binary=binary,
        scaler=scaler,
        source=str(source),
    )
    write_parquet(output, frame)
    log.info("wrote %d rows; column means %s", len(frame), frame[labels].mean().round(3).to_dict())
    return frame


# ---------------------------------------------------------------------------- alignment


def score_alignment(
    dataset: str,
    examples: PathArg,
    id_paths: Sequence[PathArg],
    dist_paths: Sequence[PathArg],
    *,
    runs: Sequence[Mapping],
    testsets: Sequence[str],
    methods: Mapping[str, Mapping],
    display_name: str,
    metric: Mapping,
    bootstrap: Mapping,
    digits: int,
    csv: PathArg,
    md: PathArg,
    tex: PathArg,
) -> pd.DataFrame:
    """Every distribution of one dataset scored → ``alignment_{dataset}.{csv,md,tex}``.
    ``metric``: ``MetricSettings`` fields (``nll_clip``, ``threshold``); ``bootstrap``:
    ``BootstrapSettings`` fields (``n``, ``seed``, ``alpha``)."""
    from tqdm import tqdm

    entries = [
        AlignmentEntry(r["model"], r["prompt"], r["testset"], r["method"], str(path))
        for r, path in zip(runs, dist_paths, strict=True)
    ]
    table = alignment_table(
        entries,
        load_canonical(Path(examples).parent),
        _testset_ids(testsets, id_paths),
        {m: MethodInfo.from_cfg(m, cfg) for m, cfg in methods.items()},
        dataset_name=dataset,
        settings=MetricSettings(**metric),
        bootstrap=BootstrapSettings(**bootstrap),
        progress=lambda xs: tqdm(xs, desc=f"score {dataset}", file=sys.stderr),
    )
    table.insert(1, "dataset_display", display_name)
    write_csv(csv, table, index=False)
    write_text(md, alignment_page_markdown(table, display_name, digits))
    caption = f"Distribution alignment on {display_name}"
    write_text(tex, alignment_latex(table, digits=digits, caption=caption))
    log.info("scored %d distributions of %s", len(table), dataset)
    return table


def score_token_level(
    examples: PathArg,
    id_paths: Sequence[PathArg],
    dist_paths: Sequence[PathArg],
    *,
    runs: Sequence[Mapping],
    testsets: Sequence[str],
    methods: Mapping[str, Mapping],
    display_name: str,
    threshold: float,
    digits: int,
    csv: PathArg,
    md: PathArg,
) -> pd.DataFrame:
    """The second paper's metrics (Praharaj & Kasundra 2025) of every distribution of one
    dataset against its aggregate labels → ``token_level_{dataset}.{csv,md}``."""
    dataset = load_canonical(Path(examples).parent)
    ids = _testset_ids(testsets, id_paths)
    table = token_level_table(runs, dist_paths, dataset, ids, methods, threshold)
    write_csv(csv, table, index=False)
    write_text(md, token_level_markdown(table, display_name, threshold, digits))
    log.info("scored %d distributions of %s", len(table), display_name)
    return table


def write_results_long(
    alignment_paths: Sequence[PathArg], token_level_paths: Sequence[PathArg], output: PathArg
) -> pd.DataFrame:
    """The per-dataset alignment (and token-level) CSVs → the long results table."""
    table = results_long_from_files(alignment_paths, token_level_paths)
    write_csv(output, table, index=False)
    log.info("%d result rows from %d tables", len(table), len(alignment_paths))
    return table


def write_paper_table(
    results: PathArg,
    metas: Sequence[PathArg],
    *,
    table: str,
    datasets: Sequence[str],
    display_names: Mapping[str, str],
    spec: Mapping,
    methods: Mapping[str, Mapping],
    title: str,
    digits: int,
    csv: PathArg,
    md: PathArg,
    tex: PathArg,
) -> pd.DataFrame:
    """Table 2 / Table 5 (``table``) as a view of ``results_long.csv`` → csv, md, tex.
    ``spec``: ``model`` and optionally ``prompt``/``testset`` of the shown run."""
    columns = [
        DatasetColumn(name, display_names[name], bool(read_json(meta)["multilabel"]))
        for name, meta in zip(datasets, metas, strict=True)
    ]
    infos = [MethodInfo.from_cfg(m, cfg) for m, cfg in methods.items()]
    spec = dict(spec)
    frame = paper_table_from_long(
        read_results_long(results),
        columns,
        infos,
        spec["model"],
        spec.get("prompt"),
        spec.get("testset"),
    )
    caption = paper_table_caption(title, frame)
    write_csv(csv, frame, index=False)
    write_text(md, paper_table_markdown(frame, infos, digits, title=f"# {caption}"))
    write_text(tex, paper_table_latex(frame, infos, digits, caption=caption, label=f"tab:{table}"))
    log.info("%s: %d method rows over %d datasets", table, len(frame), len(columns))
    return frame


# ---------------------------------------------------------------------------- analyses


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
    ``analyses.TRACE_ANALYSES``), each tagged with ``keys`` (dataset, model, prompt, testset)."""
    meta, trace_list = read_traces(traces)
    dataset = load_canonical(Path(examples).parent)
    gold = dict(zip(dataset.examples["id"].astype(str), dataset.examples["labels"], strict=True))
    # the order the instruction lists the labels in: the engine's record if it kept one
    prompt_order = meta.info.get("prompt_labels") or order_labels(meta.labels, label_order, seed)
    log.info("%d traces, labels %s, prompt order %s", len(trace_list), meta.labels, prompt_order)
    human = {str(i): row for i, row in dataset.human_distribution().to_dict(orient="index").items()}
    tables = analyses.trace_analyses(
        trace_list,
        meta.labels,
        gold,
        prompt_order,
        human=human,
        label_format=meta.info.get("label_format"),
    )
    tables["multilabel_rate"] = analyses.tag(
        tables["multilabel_rate"], multilabel_ratio=multilabel_ratio
    )
    tables["label_order"] = analyses.tag(tables["label_order"], label_order=label_order, seed=seed)
    for name in analyses.TRACE_ANALYSES:
        write_csv(outputs[name], analyses.tag(tables[name], **keys), index=False)
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
