"""Snakemake adapter: Table 1 (annotators, agreement, label-count shares) over all datasets."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.data.jobs:dataset_stats_from_files",
    snakemake.input.tables,
    snakemake.output.csv,
    snakemake.output.md,
)
