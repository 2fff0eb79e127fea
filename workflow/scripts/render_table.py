"""Snakemake adapter: one CSV table → a standalone HTML page for the report."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.report.jobs:render_table_page",
    snakemake.input[0],
    snakemake.output[0],
    title=snakemake.params.title,
    caption=snakemake.params.caption,
    digits=snakemake.params.digits,
    pivot=snakemake.params.pivot,
    columns=snakemake.params.columns,
)
