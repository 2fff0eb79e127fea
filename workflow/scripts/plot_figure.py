"""Snakemake adapter: stacked analysis CSVs → one paper figure (PNG + PDF); the figure kinds
are the registry multilabel_llm.report.plots.FIGURES."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

from multilabel_llm.workflow.adapter import named, start

start(snakemake)

from multilabel_llm.report.plots import draw_figure

params = named(snakemake.params)
draw_figure(params["kind"], snakemake.input, params, snakemake.output.png, snakemake.output.pdf)
