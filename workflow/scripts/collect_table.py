"""Snakemake adapter: stack per-run analysis CSVs into one paper table (Tables 4, 6, 7, …)."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.report.jobs:collect_table",
    snakemake.input,
    snakemake.output[0],
    table=snakemake.params.table,
    run_keys=snakemake.params.run_keys,
)
