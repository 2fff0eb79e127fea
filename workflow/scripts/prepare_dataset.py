"""Snakemake adapter: read one dataset's published files, write its canonical table."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.data.jobs:prepare_dataset_from_files",
    snakemake.params.cfg,
    snakemake.output.table,
)
