"""Snakemake adapter: the dataset's shared demo pool (demo split minus every evaluated id)."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.data.jobs:demo_pool_from_files",
    snakemake.input.table,
    snakemake.input.ids,
    snakemake.output[0],
    **named(snakemake.params),
)
