"""Snakemake adapter: train the Demux encoder baseline on one dataset (paper §A.5, "BERT")."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.supervised.jobs:train_demux_from_files",
    snakemake.input.table,
    snakemake.input.exclude,
    snakemake.output.model,
    snakemake.output.log_csv,
    demux=snakemake.params.demux,
    threads=snakemake.threads,
)
