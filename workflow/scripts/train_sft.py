"""Snakemake adapter: LoRA-finetune one model on one dataset's train split (paper §A.5)."""

from pathlib import Path

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.supervised.jobs:train_sft_from_files",
    Path(snakemake.input.table).parent,
    dict(snakemake.params.model),
    dict(snakemake.params.prompt),
    dict(snakemake.params.sft),
    snakemake.output.adapter,
    snakemake.params.checkpoints,
    snakemake.output.log_csv,
    testsets=dict(zip(snakemake.params.testsets, snakemake.input.testsets, strict=True)),
    loader=snakemake.params.loader,
    threads=snakemake.threads,
)
