"""Snakemake adapter: gold-trained probes' probabilities on one test set's hidden states."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.supervised.jobs:probe_distribution_from_files",
    snakemake.input.probes,
    snakemake.input.hidden,
    snakemake.input.ids,
    snakemake.output.dist,
)
