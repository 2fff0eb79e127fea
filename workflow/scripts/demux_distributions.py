"""Snakemake adapter: Demux probabilities for one test set (sigmoid, or softmax single-label)."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

from multilabel_llm.core.io import read_id_list, write_parquet
from multilabel_llm.data.canonical import load_canonical
from multilabel_llm.supervised.demux import demux_distribution

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

dataset = load_canonical(Path(snakemake.input.table).parent)
ids = read_id_list(snakemake.input.ids)
frame = demux_distribution(snakemake.input.model, dataset, ids)
write_parquet(snakemake.output.dist, frame)
logging.info("wrote %d Demux distributions to %s", len(frame), snakemake.output.dist)
