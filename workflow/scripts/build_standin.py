"""Snakemake adapter: build one CPU stand-in model directory (experiment paper_smoke)."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging

from multilabel_llm.engine.run import set_threads
from multilabel_llm.workflow.standins import write_standin

set_threads(snakemake.threads)  # the job's share of cores, not all of them

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

record = write_standin(dict(snakemake.params.spec), snakemake.output[0])
logging.info(
    "%s: digest %s, training %s", snakemake.wildcards.standin, record["digest"], record["training"]
)
