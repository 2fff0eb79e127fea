"""Snakemake adapter: linear probes on first-label hidden states (Gold / Pred / Pred 2+ / Perf)."""

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.supervised.jobs:train_probes_from_files",
    snakemake.input.table,
    snakemake.input.train_hidden,
    snakemake.input.train_traces,
    snakemake.input.eval_hidden,
    snakemake.input.eval_traces,
    snakemake.output.scores,
    snakemake.output.probes,
    probes=snakemake.params.probes,
)
