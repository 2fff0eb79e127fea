"""Snakemake adapter: one distribution method → results/distributions/.../{method}.parquet."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.methods.jobs:estimate_method",
    snakemake.params.kind,
    snakemake.params.settings,
    named(snakemake.input),
    snakemake.output[0],
    method=snakemake.wildcards.method,
)
