"""Snakemake adapter: the second paper's metrics (micro-F1 at a threshold, Hamming loss,
micro ROC-AUC; Praharaj & Kasundra 2025) of every distribution of one dataset, against its
aggregate labels → token_level_{dataset}.{csv,md}."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

import pandas as pd

from multilabel_llm.datasets import load_canonical
from multilabel_llm.estimators import align_to_ids
from multilabel_llm.io import read_id_list, write_csv, write_text
from multilabel_llm.metrics import TOKEN_LEVEL_METRICS, token_level_metrics

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

params = snakemake.params
dataset = load_canonical(Path(snakemake.input.examples).parent)
testset_ids = {
    t: read_id_list(p) for t, p in zip(params.testsets, snakemake.input.ids, strict=True)
}
rows = []
for run, path in zip(params.runs, snakemake.input.dists, strict=True):
    ids = [str(i) for i in testset_ids[run["testset"]]]
    q = align_to_ids(pd.read_parquet(path), ids, dataset.labels, str(path))
    gold = dataset.gold_matrix(ids).to_numpy(dtype=float)
    info = params.methods.get(run["method"], {})
    rows.append(
        {
            **{k: run[k] for k in ("model", "prompt", "testset", "method")},
            "display_name": info.get("display_name", run["method"]),
            "n_examples": len(ids),
            "threshold": params.threshold,
            **token_level_metrics(q, gold, params.threshold),
        }
    )
table = pd.DataFrame(rows)
write_csv(snakemake.output.csv, table, index=False)
header = ["Model", "Test set", "Method", "n", *TOKEN_LEVEL_METRICS]
lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
for r in rows:
    cells = [r["model"], r["testset"], r["display_name"], str(r["n_examples"])]
    cells += [f"{r[m]:.{params.digits}f}" for m in TOKEN_LEVEL_METRICS]
    lines.append("| " + " | ".join(cells) + " |")
write_text(
    snakemake.output.md,
    f"# Token-level metrics (Praharaj & Kasundra 2025): {params.display_name}\n\n"
    f"Against the aggregate labels; micro-F1 and Hamming loss at q >= {params.threshold}.\n\n"
    + "\n".join(lines)
    + "\n",
)
logging.info("scored %d distributions of %s", len(rows), params.display_name)
