"""Snakemake adapter: stacked analysis CSVs → one paper figure (PNG + PDF); the figure kinds
are the registry multilabel_llm.report.figure_registry.FIGURES."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.report.jobs:plot_figure",
    snakemake.input,
    named(snakemake.params),
    snakemake.output.png,
    snakemake.output.pdf,
)
