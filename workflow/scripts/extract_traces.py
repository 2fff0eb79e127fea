"""Adapter for rule extract_traces: per-step label traces (sharded, resumable)."""

import os

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.engine.jobs:extract_traces_from_files",
    data_dir=os.path.dirname(snakemake.input.examples),
    ids_path=snakemake.input.ids,
    model_cfg=dict(snakemake.params.model),
    prompt_cfg=dict(snakemake.params.prompt),
    out_path=snakemake.output.traces,
    hidden_path=snakemake.output.get("hidden"),
    demo_split=snakemake.params.demo_split,
    loader=snakemake.params.loader,
    adapter=snakemake.input.get("adapter"),
    threads=snakemake.threads,
    demo_pool=snakemake.input.get("demo_pool"),
)
