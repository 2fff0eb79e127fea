"""Snakemake adapter: the paper's Table 2 / Table 5 layout as a view of results_long.csv."""

from multilabel_llm.workflow.adapter import named, run_job

run_job(
    snakemake,
    "multilabel_llm.scoring.jobs:write_paper_table",
    snakemake.input.results,
    snakemake.input.metas,
    table=snakemake.wildcards.table,
    **named(snakemake.params),
    **named(snakemake.output),
)
