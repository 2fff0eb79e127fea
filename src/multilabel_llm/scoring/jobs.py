"""File front ends of the scoring stage: distributions and test sets in, the alignment and
token-level tables, the long results table and the paper's tables out (rules
``score_alignment``, ``score_token_level``, ``results_long``, ``alignment_tables``).

Each reads its inputs, calls :mod:`.alignment` and :mod:`.tables` and writes its outputs
atomically; none imports snakemake, so a stage runs from a notebook with plain paths.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from multilabel_llm.core.io import read_id_list, read_json, write_csv, write_text
from multilabel_llm.core.metrics import MetricSettings
from multilabel_llm.data.canonical import load_canonical
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
