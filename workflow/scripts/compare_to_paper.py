"""Snakemake adapter: the run's paper tables side by side with the paper's own numbers."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.report.jobs:compare_to_paper",
    named(snakemake.input),
    **named(snakemake.params),
    **named(snakemake.output),
)
