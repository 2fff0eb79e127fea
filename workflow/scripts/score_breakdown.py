"""Adapter for rule score_breakdown ({kind} wildcard): breakdown scores."""

import os

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.engine.jobs:breakdown_from_files",
    kind=snakemake.params.kind,
    data_dir=os.path.dirname(snakemake.input.examples),
    ids_path=snakemake.input.ids,
    model_cfg=dict(snakemake.params.model),
    prompt_cfg=dict(snakemake.params.prompt),
    out_path=snakemake.output[0],
    demo_split=snakemake.params.demo_split,
    adapter=snakemake.input.get("adapter"),
    threads=snakemake.threads,
    demo_pool=snakemake.input.get("demo_pool"),
)
