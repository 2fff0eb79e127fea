"""Snakemake adapter: linear probes on first-label hidden states (Gold / Pred / Pred 2+ / Perf)."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

import joblib

from multilabel_llm.core.io import atomic_path, write_csv
from multilabel_llm.data.canonical import load_canonical
from multilabel_llm.supervised.probes import load_probe_data, probe_scores

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

dataset = load_canonical(Path(snakemake.input.table).parent)
train = load_probe_data(snakemake.input.train_hidden, snakemake.input.train_traces, dataset)
evaluation = load_probe_data(snakemake.input.eval_hidden, snakemake.input.eval_traces, dataset)
scores, probes = probe_scores(
    train, evaluation, dataset.labels, dataset.multilabel, dict(snakemake.params.probes)
)
logging.info("probe scores:\n%s", scores.to_string(index=False))
write_csv(snakemake.output.scores, scores, index=False)
with atomic_path(snakemake.output.probes) as tmp:
    joblib.dump({"labels": list(dataset.labels), **probes}, tmp)
