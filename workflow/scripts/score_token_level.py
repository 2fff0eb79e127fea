"""Snakemake adapter: the second paper's metrics (micro-F1 at a threshold, Hamming loss,
micro ROC-AUC; Praharaj & Kasundra 2025) of every distribution of one dataset, against its
aggregate labels → token_level_{dataset}.{csv,md}."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

from multilabel_llm.workflow.adapter import named, start

start(snakemake)

from multilabel_llm.workflow.steps import score_token_level

score_token_level(
    snakemake.input.examples,
    snakemake.input.ids,
    snakemake.input.dists,
    **named(snakemake.params),
    **named(snakemake.output),
)
