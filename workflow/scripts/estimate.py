"""Snakemake adapter: one distribution method → results/distributions/.../{method}.parquet."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

from multilabel_llm.workflow.adapter import named, start

start(snakemake)

from multilabel_llm.workflow.steps import estimate_method

estimate_method(
    snakemake.params.kind,
    snakemake.params.settings,
    named(snakemake.input),
    snakemake.output[0],
    method=snakemake.wildcards.method,
)
