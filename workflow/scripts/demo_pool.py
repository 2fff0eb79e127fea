"""Snakemake adapter: the dataset's shared demo pool (demo split minus every evaluated id)."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

from multilabel_llm.core.io import read_id_list, write_id_list
from multilabel_llm.data import load_canonical
from multilabel_llm.data.prompts import select_demo_pool

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

params = snakemake.params
dataset = load_canonical(Path(snakemake.input.table).parent)
evaluated = {
    name: read_id_list(path)
    for name, path in zip(params.testsets, snakemake.input.ids, strict=True)
}
try:
    pool = select_demo_pool(dataset, params.demo_split, evaluated, int(params.need))
except ValueError as err:  # name the config key asking for that many demonstrations
    raise ValueError(f"{err} ({params.need_from} asks for {params.need})") from None
write_id_list(snakemake.output[0], pool)
logging.info(
    "%s: demo pool of %d ids from %r, excluding test sets %s",
    dataset.name,
    len(pool),
    params.demo_split,
    sorted(evaluated),
)
