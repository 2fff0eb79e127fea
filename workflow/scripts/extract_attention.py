"""Adapter for rule extract_attention: attention on input vs. label tokens (Table 6)."""

import logging
import os
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from multilabel_llm.engine.jobs import attention_from_files  # noqa: E402

attention_from_files(
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
