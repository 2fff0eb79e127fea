"""Adapter for rule score_breakdown ({kind} wildcard): breakdown scores."""

import logging
import os
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from multilabel_llm.engine.jobs import breakdown_from_files  # noqa: E402

breakdown_from_files(
    snakemake.params.kind,
    os.path.dirname(snakemake.input.examples),
    snakemake.input.ids,
    snakemake.params.model,
    snakemake.params.prompt,
    snakemake.output[0],
    demo_split=snakemake.params.demo_split,
    adapter=snakemake.input.get("adapter"),
    threads=snakemake.threads,
    demo_pool=snakemake.input.get("demo_pool"),
)
