"""Snakemake adapter: score every distribution of one dataset → alignment_{dataset}.{csv,md,tex}."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

from tqdm import tqdm

from multilabel_llm.alignment_tables import (
    AlignmentEntry,
    BootstrapSettings,
    MethodInfo,
    alignment_latex,
    alignment_markdown,
    alignment_table,
)
from multilabel_llm.datasets import load_canonical
from multilabel_llm.io import read_id_list, write_csv, write_text
from multilabel_llm.metrics import MetricSettings

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

params = snakemake.params
name = snakemake.wildcards.dataset
dataset = load_canonical(Path(snakemake.input.examples).parent)
testset_ids = {
    t: read_id_list(p) for t, p in zip(params.testsets, snakemake.input.ids, strict=True)
}
entries = [
    AlignmentEntry(r["model"], r["prompt"], r["testset"], r["method"], str(path))
    for r, path in zip(params.runs, snakemake.input.dists, strict=True)
]
methods = {m: MethodInfo.from_cfg(m, cfg) for m, cfg in params.methods.items()}
table = alignment_table(
    entries,
    dataset,
    testset_ids,
    methods,
    dataset_name=name,
    settings=MetricSettings(**params.metric),
    bootstrap=BootstrapSettings(**params.bootstrap),
    progress=lambda xs: tqdm(xs, desc=f"score {name}", file=sys.stderr),
)
table.insert(1, "dataset_display", params.display_name)
write_csv(snakemake.output.csv, table, index=False)
write_text(
    snakemake.output.md,
    f"# Distribution alignment: {params.display_name}\n\n"
    + "Mean [95% bootstrap CI]; rows in parentheses are N/A in the paper.\n\n"
    + alignment_markdown(table, digits=params.digits),
)
write_text(
    snakemake.output.tex,
    alignment_latex(
        table, digits=params.digits, caption=f"Distribution alignment on {params.display_name}"
    ),
)
logging.info("scored %d distributions of %s", len(table), name)
