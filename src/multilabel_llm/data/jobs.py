"""File front ends of the data stage: a dataset's published files in, its canonical table,
test sets, demo pool and Table 1 out (rules ``prepare_dataset``, ``build_testsets``,
``demo_pool``, ``dataset_stats``).

Each reads its inputs, calls the loaders, :mod:`.testsets`, :mod:`.prompts` or
:mod:`.dataset_stats` and writes its outputs atomically; none imports snakemake, so a stage
runs from a notebook with plain paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from multilabel_llm.core.io import read_id_list, write_id_list
from multilabel_llm.data import prepare
from multilabel_llm.data.canonical import load_canonical, save_canonical
from multilabel_llm.data.dataset_stats import table1, write_table1
from multilabel_llm.data.prompts import select_demo_pool
from multilabel_llm.data.testsets import build_testset, describe

log = logging.getLogger(__name__)

PathArg = str | os.PathLike


def prepare_dataset_from_files(cfg: Mapping, table: PathArg) -> None:
    """Read one dataset's published files (paths in ``cfg`` relative to the working
    directory), write its canonical table into ``table``'s folder."""
    dataset = prepare(dict(cfg), root=Path.cwd())
    out_dir = Path(table).parent
    save_canonical(dataset, out_dir)
    log.info("%s: wrote %d examples to %s", dataset.name, len(dataset.examples), out_dir)


def build_testset_from_files(table: PathArg, testset: str, cfg: Mapping, output: PathArg) -> list:
    """Draw test set ``testset`` (an id list → ``output``) from the prepared dataset."""
    dataset = load_canonical(Path(table).parent)
    ids = build_testset(dataset, testset, dict(cfg))
    write_id_list(output, ids)
    log.info("%s/%s: %d ids, cells %s", dataset.name, testset, len(ids), describe(dataset, ids))
    return ids


def demo_pool_from_files(
    table: PathArg,
    id_paths: Sequence[PathArg],
    output: PathArg,
    *,
    testsets: Sequence[str],
    demo_split: str,
    need: int,
    need_from: str,
) -> list:
    """The dataset's shared demo pool (``demo_split`` minus every evaluated id) → ``output``.
    ``need``: the most demonstrations a prompt asks for; ``need_from`` names that config key."""
    dataset = load_canonical(Path(table).parent)
    evaluated = {name: read_id_list(path) for name, path in zip(testsets, id_paths, strict=True)}
    try:
        pool = select_demo_pool(dataset, demo_split, evaluated, int(need))
    except ValueError as err:  # name the config key asking for that many demonstrations
        raise ValueError(f"{err} ({need_from} asks for {need})") from None
    write_id_list(output, pool)
    log.info(
        "%s: demo pool of %d ids from %r, excluding test sets %s",
        dataset.name,
        len(pool),
        demo_split,
        sorted(evaluated),
    )
    return pool


def dataset_stats_from_files(tables: Sequence[PathArg], csv: PathArg, md: PathArg) -> None:
    """Table 1 (annotators, agreement, label-count shares) over the canonical tables."""
    datasets = [load_canonical(Path(path).parent) for path in tables]
    write_table1(table1(datasets), csv, md)
