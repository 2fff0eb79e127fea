"""Snakemake adapter: the second paper's metrics (micro-F1 at a threshold, Hamming loss,
micro ROC-AUC; Praharaj & Kasundra 2025) of every distribution of one dataset, against its
aggregate labels → token_level_{dataset}.{csv,md}."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.scoring.jobs:score_token_level",
    snakemake.input.examples,
    snakemake.input.ids,
    snakemake.input.dists,
    **named(snakemake.params),
    **named(snakemake.output),
)
