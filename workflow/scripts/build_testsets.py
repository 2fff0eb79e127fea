"""Snakemake adapter: draw one test set (an id list) from a prepared dataset."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

from multilabel_llm.core.io import write_id_list
from multilabel_llm.data import load_canonical
from multilabel_llm.data.testsets import build_testset, describe

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

dataset = load_canonical(Path(snakemake.input.table).parent)
ids = build_testset(dataset, snakemake.wildcards.testset, dict(snakemake.params.cfg))
write_id_list(snakemake.output.ids, ids)
logging.info(
    "%s/%s: %d ids, cells %s",
    dataset.name,
    snakemake.wildcards.testset,
    len(ids),
    describe(dataset, ids),
)
