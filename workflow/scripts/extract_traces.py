"""Adapter for rule extract_traces: per-step label traces (sharded, resumable)."""

import logging
import os
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from multilabel_llm.engine.jobs import extract_traces_from_files  # noqa: E402

summary = extract_traces_from_files(
    os.path.dirname(snakemake.input.examples),
    snakemake.input.ids,
    snakemake.params.model,
    snakemake.params.prompt,
    snakemake.output.traces,
    hidden_path=snakemake.output.get("hidden"),
    demo_split=snakemake.params.demo_split,
    loader=snakemake.params.loader,
    adapter=snakemake.input.get("adapter"),
    threads=snakemake.threads,
    demo_pool=snakemake.input.get("demo_pool"),
)
print(summary, file=sys.stderr)
