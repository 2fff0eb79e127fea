"""Adapter for rule extract_attention: attention on input vs. label tokens (Table 6)."""

import os

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.engine.jobs:attention_from_files",
    os.path.dirname(snakemake.input.examples),
    snakemake.input.traces,
    snakemake.params.model,
    snakemake.params.prompt,
    snakemake.output[0],
    demo_split=snakemake.params.demo_split,
    loader=snakemake.params.loader,
    adapter=snakemake.input.get("adapter"),
    threads=snakemake.threads,
    demo_pool=snakemake.input.get("demo_pool"),
)
