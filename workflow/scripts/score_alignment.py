"""Snakemake adapter: score every distribution of one dataset → alignment_{dataset}.{csv,md,tex}."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

from multilabel_llm.workflow.adapter import named, start

start(snakemake)

from multilabel_llm.workflow.steps import score_alignment

score_alignment(
    snakemake.wildcards.dataset,
    snakemake.input.examples,
    snakemake.input.ids,
    snakemake.input.dists,
    **named(snakemake.params),
    **named(snakemake.output),
)
