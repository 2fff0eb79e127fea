"""Snakemake adapter: one binary-breakdown method → its distribution and its position bias."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.methods.jobs:estimate_binary_method",
    snakemake.params.settings,
    named(snakemake.input),
    snakemake.output.dist,
    snakemake.output.bias,
    method=snakemake.wildcards.method,
)
