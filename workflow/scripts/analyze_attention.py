"""Snakemake adapter: one attention.csv (engine) → its Table 6 summary row."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.analyses.jobs:summarize_attention",
    snakemake.input.attention,
    snakemake.output[0],
    named(snakemake.wildcards),
    min_step=snakemake.params.min_step,
)
