"""Snakemake adapter: token-level marginalisation (bounded path search) for one test set.

Resumable: shards beside the output (``<method>.shards/``) survive a killed job, keyed by
everything that decides their content (see multilabel_llm.engine.run).
"""

import os

from multilabel_llm.workflow.adapter import run_job

run_job(
    snakemake,
    "multilabel_llm.engine.jobs:marginalize_from_files",
    data_dir=os.path.dirname(snakemake.input.examples),
    ids_path=snakemake.input.ids,
    model_cfg=dict(snakemake.params.model),
    prompt_cfg=dict(snakemake.params.prompt),
    settings=dict(snakemake.params.settings),
    dist_path=snakemake.output.dist,
    stats_path=snakemake.output.stats,
    demo_split=snakemake.params.demo_split,
    loader=snakemake.params.loader,
    adapter=snakemake.input.get("adapter"),
    threads=snakemake.threads,
    demo_pool=snakemake.input.get("demo_pool"),
    placeholders=dict(snakemake.wildcards.items()),  # an SFT slot's {dataset} adapter path
)
