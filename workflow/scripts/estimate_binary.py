"""Snakemake adapter: one binary-breakdown method → its distribution and its position bias."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging

import pandas as pd

from multilabel_llm.core.io import read_id_list, read_json, write_csv, write_parquet
from multilabel_llm.methods.estimators import estimate_binary

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

inp = snakemake.input
meta = read_json(inp.meta)
labels, multilabel = list(meta["labels"]), bool(meta["multilabel"])
ids = read_id_list(inp.ids)
# orders: both reads the label-order file and the reversed one together
files = [inp.binary, *([inp.binary_reversed] if "binary_reversed" in inp.keys() else [])]
binary = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
logging.info("%s on %d ids from %s", snakemake.wildcards.method, len(ids), files)

fit = estimate_binary(
    snakemake.params.settings, ids, labels, multilabel, binary, source=" + ".join(files)
)
write_parquet(snakemake.output.dist, fit.frame)
write_csv(snakemake.output.bias, pd.DataFrame([fit.bias]), index=False)
logging.info("position bias %s", fit.bias)
logging.info("column means %s", fit.frame[labels].mean().round(3).to_dict())
