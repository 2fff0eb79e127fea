"""Snakemake adapter: the per-dataset alignment (and token-level) tables → results_long.csv,
the long results table every report table is a view of."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.scoring.jobs:write_results_long",
    snakemake.input.alignment,
    snakemake.input.get("token_level", []),
    snakemake.output[0],
)
