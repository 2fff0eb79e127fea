"""Snakemake adapter: Table 1 (annotators, agreement, label-count shares) over all datasets."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

from multilabel_llm.data import load_canonical
from multilabel_llm.data.dataset_stats import table1, write_table1

datasets = [load_canonical(Path(path).parent) for path in snakemake.input.tables]
write_table1(table1(datasets), snakemake.output.csv, snakemake.output.md)
