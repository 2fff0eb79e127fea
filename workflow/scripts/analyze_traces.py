"""Snakemake adapter: one trace file → the §4/§D analysis CSVs (multilabel_llm.analyses.mechanisms)."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

from multilabel_llm.workflow.adapter import named, start

start(snakemake)

from multilabel_llm.workflow.steps import analyze_traces

analyze_traces(
    snakemake.input.traces,
    snakemake.input.examples,
    named(snakemake.output),
    named(snakemake.wildcards),
    **named(snakemake.params),
)
