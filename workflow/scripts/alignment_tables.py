"""Snakemake adapter: the paper's Table 2 / Table 5 layout from the alignment tables."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging

import pandas as pd

from multilabel_llm.alignment_tables import (
    DatasetColumn,
    MethodInfo,
    paper_table,
    paper_table_latex,
    paper_table_markdown,
)
from multilabel_llm.io import read_json, write_csv, write_text

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

params = snakemake.params
alignment = pd.concat([pd.read_csv(p) for p in snakemake.input.alignment], ignore_index=True)
datasets = [
    DatasetColumn(name, params.display_names[name], bool(read_json(meta)["multilabel"]))
    for name, meta in zip(params.datasets, snakemake.input.metas, strict=True)
]
methods = [MethodInfo.from_cfg(m, cfg) for m, cfg in params.methods.items()]
spec = dict(params.spec)
table = paper_table(
    alignment, datasets, methods, spec["model"], spec.get("prompt"), spec.get("testset")
)
where = f"model {spec['model']}, prompt {table.attrs['prompt']}, test set {table.attrs['testset']}"
caption = (
    f"{params.title}: {where}. Mean [95% bootstrap CI] against the human distribution; "
    "F1 is example-F1. N/A: not applicable to single-label datasets; —: not run; "
    "untrained: a supervised method that learned nothing usable (reasons under the table)."
)
write_csv(snakemake.output.csv, table, index=False)
write_text(
    snakemake.output.md, paper_table_markdown(table, methods, params.digits, title=f"# {caption}")
)
write_text(
    snakemake.output.tex,
    paper_table_latex(
        table, methods, params.digits, caption=caption, label=f"tab:{snakemake.wildcards.table}"
    ),
)
logging.info(
    "%s: %d method rows over %d datasets (%s)",
    snakemake.wildcards.table,
    len(table),
    len(datasets),
    where,
)
