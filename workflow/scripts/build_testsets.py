"""Snakemake adapter: draw one test set (an id list) from a prepared dataset."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.data.jobs:build_testset_from_files",
    snakemake.input.table,
    snakemake.wildcards.testset,
    snakemake.params.cfg,
    snakemake.output.ids,
)
