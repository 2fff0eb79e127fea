"""Snakemake adapter: the paper's Table 2 / Table 5 layout as a view of results_long.csv."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

from multilabel_llm.workflow.adapter import named, start

start(snakemake)

from multilabel_llm.workflow.steps import write_paper_table

write_paper_table(
    snakemake.input.results,
    snakemake.input.metas,
    table=snakemake.wildcards.table,
    **named(snakemake.params),
    **named(snakemake.output),
)
