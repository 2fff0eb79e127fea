"""Snakemake adapter: one traced run's traces + distributions → its example explorer page."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.report.jobs:write_explorer_page",
    snakemake.input.examples,
    snakemake.input.traces,
    snakemake.input.dists,
    snakemake.input.alignment,
    snakemake.output.html,
    methods=snakemake.params.methods,
    run=snakemake.params.run,
    metric=snakemake.params.metric,
)
