"""Snakemake adapter: one trace file → the §4/§D analysis CSVs (multilabel_llm.analyses.run_tables)."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.analyses.jobs:analyze_traces",
    snakemake.input.traces,
    snakemake.input.examples,
    named(snakemake.output),
    named(snakemake.wildcards),
    **named(snakemake.params),
)
