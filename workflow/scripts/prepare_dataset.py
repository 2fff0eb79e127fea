"""Snakemake adapter: read one dataset's published files, write its canonical table."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

from multilabel_llm.data import prepare, save_canonical

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

dataset = prepare(dict(snakemake.params.cfg), root=Path.cwd())
out_dir = Path(snakemake.output.table).parent
save_canonical(dataset, out_dir)
logging.info("%s: wrote %d examples to %s", dataset.name, len(dataset.examples), out_dir)
