"""Snakemake adapter: gold-trained probes' probabilities on one test set's hidden states."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging

import joblib

from multilabel_llm.core.io import read_id_list, write_parquet
from multilabel_llm.supervised.probes import load_hidden, probe_distribution

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

saved = joblib.load(snakemake.input.probes)
ids, states = load_hidden(snakemake.input.hidden)
wanted = read_id_list(snakemake.input.ids)
missing = sorted(set(wanted) - set(ids))
if missing:
    raise ValueError(f"{snakemake.input.hidden}: no hidden state for test-set ids {missing[:5]}")
row = {i: k for k, i in enumerate(ids)}
keep = [row[i] for i in wanted]
frame = probe_distribution(saved["gold"], wanted, states[keep])
write_parquet(snakemake.output.dist, frame)
logging.info("wrote %d probe distributions to %s", len(frame), snakemake.output.dist)
