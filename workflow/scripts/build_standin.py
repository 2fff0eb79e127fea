"""Snakemake adapter: build one CPU stand-in model directory (experiment paper_smoke)."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.workflow.jobs:build_standin",
    snakemake.params.spec,
    snakemake.output[0],
    name=snakemake.wildcards.standin,
    threads=snakemake.threads,
)
