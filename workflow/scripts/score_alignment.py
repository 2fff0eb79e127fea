"""Snakemake adapter: score every distribution of one dataset → alignment_{dataset}.{csv,md,tex}."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.scoring.jobs:score_alignment",
    snakemake.wildcards.dataset,
    snakemake.input.examples,
    snakemake.input.ids,
    snakemake.input.dists,
    **named(snakemake.params),
    **named(snakemake.output),
)
