"""File front ends of the estimation stage: paths in, one distribution file out (rules
``estimate`` and ``estimate_binary``; workflow/scripts/ hand Snakemake's slots to these).

Each reads its inputs, calls :mod:`multilabel_llm.methods.estimators` and writes its outputs
atomically; none imports snakemake, so a stage runs from a notebook with plain paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from multilabel_llm.core.io import read_id_list, read_json, write_csv, write_parquet
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.canonical import load_canonical
from multilabel_llm.methods.breakdown import estimate_binary
from multilabel_llm.methods.estimators import estimate, fit_platt_on_calibration, platt_settings

log = logging.getLogger(__name__)

PathArg = str | os.PathLike


def estimate_method(
    kind: str, settings: Mapping, inputs: Mapping[str, PathArg], output: PathArg, method: str = ""
) -> pd.DataFrame:
    """One distribution method → ``output`` (parquet). ``inputs``: ``meta`` and ``ids``, plus
    what ``kind`` reads (methods.registry.method_inputs): ``traces``, ``unary``, ``binary``,
    or with ``calibration_traces`` also ``examples`` and ``calibration_ids``: a held-out test
    set a Platt scaler is fitted on."""
    settings = dict(settings)
    meta = read_json(inputs["meta"])
    labels, multilabel = list(meta["labels"]), bool(meta["multilabel"])
    ids = read_id_list(inputs["ids"])
    log.info("%s (%s) on %d ids of %s", method, kind, len(ids), inputs["ids"])
    traces = read_traces(inputs["traces"]) if "traces" in inputs else None
    unary = pd.read_parquet(inputs["unary"]) if "unary" in inputs else None
    binary = pd.read_parquet(inputs["binary"]) if "binary" in inputs else None
    scaler = None
    if "calibration_traces" in inputs:  # the kinds fitted on a held-out test set (Platt)
        scaler = fit_platt_on_calibration(
            load_canonical(Path(inputs["examples"]).parent),
            read_id_list(inputs["calibration_ids"]),
            read_traces(inputs["calibration_traces"]),
            ids,
            platt_settings(settings),
            source=str(inputs["calibration_traces"]),
            scored_source=str(inputs["ids"]),
        )
    source = inputs.get("traces") or inputs.get("unary") or inputs.get("binary") or inputs["ids"]
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
        source=str(source),
    )
    write_parquet(output, frame)
    log.info("wrote %d rows; column means %s", len(frame), frame[labels].mean().round(3).to_dict())
    return frame


def estimate_binary_method(
    settings: Mapping,
    inputs: Mapping[str, PathArg],
    dist: PathArg,
    bias: PathArg,
    method: str = "",
) -> pd.DataFrame:
    """One binary-breakdown method → its distribution (``dist``, parquet) and its position
    bias (``bias``, CSV). ``inputs``: ``meta``, ``ids``, ``binary`` and, for ``orders: both``,
    ``binary_reversed`` (the reversed label order, read together with the first)."""
    meta = read_json(inputs["meta"])
    labels, multilabel = list(meta["labels"]), bool(meta["multilabel"])
    ids = read_id_list(inputs["ids"])
    files = [
        inputs["binary"],
        *([inputs["binary_reversed"]] if "binary_reversed" in inputs else []),
    ]
    binary = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    log.info("%s on %d ids from %s", method, len(ids), files)

    fit = estimate_binary(settings, ids, labels, multilabel, binary, source=" + ".join(files))
    write_parquet(dist, fit.frame)
    write_csv(bias, pd.DataFrame([fit.bias]), index=False)
    log.info("position bias %s", fit.bias)
    log.info("column means %s", fit.frame[labels].mean().round(3).to_dict())
    return fit.frame
