"""Snakemake adapter: token-level marginalisation (bounded path search) for one test set.

Resumable: shards beside the output (``<method>.shards/``) survive a killed job, keyed by
everything that decides their content (see multilabel_llm.engine.run).
"""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

from multilabel_llm.engine.run import marginalize_from_files

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

model_cfg = dict(snakemake.params.model)
# an SFT slot's adapter path keeps a {dataset} placeholder (one adapter per dataset)
adapter = snakemake.input.get("adapter") or model_cfg.get("adapter")
if adapter:
    adapter = adapter.format(**dict(snakemake.wildcards.items()))
summary = marginalize_from_files(
    Path(snakemake.input.examples).parent,
    snakemake.input.ids,
    model_cfg,
    dict(snakemake.params.prompt),
    dict(snakemake.params.settings),
    snakemake.output.dist,
    snakemake.output.stats,
    demo_split=snakemake.params.demo_split,
    loader=snakemake.params.loader,
    adapter=adapter,
    threads=snakemake.threads,
    demo_pool=snakemake.input.get("demo_pool"),
)
print(summary, file=sys.stderr)
