"""Snakemake adapter: one distribution method → results/distributions/.../{method}.parquet."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

import pandas as pd

from multilabel_llm.alignment_tables import reference_distribution
from multilabel_llm.datasets import load_canonical
from multilabel_llm.estimators import estimate, fit_compare_to_none_platt, platt_settings
from multilabel_llm.io import read_id_list, read_json, write_parquet
from multilabel_llm.traces import read_traces

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

inp = snakemake.input
kind = snakemake.params.kind
settings = dict(snakemake.params.settings)
meta = read_json(inp.meta)
labels, multilabel = list(meta["labels"]), bool(meta["multilabel"])
ids = read_id_list(inp.ids)
logging.info("%s (%s) on %d ids of %s", snakemake.wildcards.method, kind, len(ids), inp.ids)

traces = read_traces(inp.traces) if "traces" in inp.keys() else None
unary = pd.read_parquet(inp.unary) if "unary" in inp.keys() else None
binary = pd.read_parquet(inp.binary) if "binary" in inp.keys() else None
scaler = None
if kind == "compare_to_none_platt":
    dataset = load_canonical(Path(inp.examples).parent)
    calib_ids = read_id_list(inp.calibration_ids)
    overlap = set(calib_ids) & set(ids)
    if overlap:
        raise ValueError(
            f"{inp.calibration_ids}: the calibration set shares {len(overlap)} ids with the "
            f"scored set {inp.ids}, e.g. {sorted(overlap)[:3]}; Platt scaling needs held-out data"
        )
    human, _, n_gold = reference_distribution(dataset, calib_ids)
    calib_meta, calib_traces = read_traces(inp.calibration_traces)
    scaler = fit_compare_to_none_platt(
        calib_meta,
        calib_traces,
        calib_ids,
        human,
        labels,
        multilabel,
        platt_settings(settings),
        source=str(inp.calibration_traces),
    )
    logging.info(
        "platt fit on %d examples (%d gold fallback): %s", len(calib_ids), n_gold, scaler.to_dict()
    )

source = str(inp.get("traces") or inp.get("unary") or inp.get("binary") or inp.ids)
frame = estimate(
    kind,
    settings,
    ids,
    labels,
    multilabel,
    traces=traces,
    unary=unary,
    binary=binary,
    scaler=scaler,
    source=source,
)
write_parquet(snakemake.output[0], frame)
logging.info("wrote %d rows; column means %s", len(frame), frame[labels].mean().round(3).to_dict())
