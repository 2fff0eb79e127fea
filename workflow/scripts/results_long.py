"""Snakemake adapter: the per-dataset alignment (and token-level) tables → results_long.csv,
the long results table every report table is a view of."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

from multilabel_llm.workflow.adapter import start

start(snakemake)

from multilabel_llm.workflow.steps import write_results_long

write_results_long(
    snakemake.input.alignment, snakemake.input.get("token_level", []), snakemake.output[0]
)
