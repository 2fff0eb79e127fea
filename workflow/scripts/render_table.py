"""Snakemake adapter: one CSV table → a standalone HTML page for the report."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from multilabel_llm.report.html import render_table  # noqa: E402

p = snakemake.params
render_table(
    snakemake.input[0],
    snakemake.output[0],
    title=p.title,
    caption=p.caption,
    digits=p.digits,
    pivot=p.pivot or None,
    columns=p.columns or None,
)
