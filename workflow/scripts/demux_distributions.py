"""Snakemake adapter: Demux probabilities for one test set (sigmoid, or softmax single-label)."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.supervised.jobs:demux_distribution_from_files",
    snakemake.input.table,
    snakemake.input.model,
    snakemake.input.ids,
    snakemake.output.dist,
)
