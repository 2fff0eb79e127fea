"""Snakemake adapter: one traced run's traces + distributions → its example explorer page."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

from multilabel_llm.workflow.adapter import start

log = start(snakemake)

from pathlib import Path

import pandas as pd

from multilabel_llm.core.metrics import MetricSettings
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data import load_canonical
from multilabel_llm.report.explorer import MethodDistribution, explorer_data, write_explorer

params = snakemake.params
dataset = load_canonical(Path(snakemake.input.examples).parent)
meta, traces = read_traces(snakemake.input.traces)
methods = [
    MethodDistribution(spec["method"], spec["display_name"], pd.read_parquet(path), str(path))
    for spec, path in zip(params.methods, snakemake.input.dists, strict=True)
]
alignment = pd.read_csv(snakemake.input.alignment[0]) if snakemake.input.alignment else None
data = explorer_data(
    meta,
    traces,
    dataset,
    methods,
    run=params.run,
    alignment=alignment,
    method_models={spec["method"]: spec["model"] for spec in params.methods},
    settings=MetricSettings(**params.metric),
    source=str(snakemake.input.traces),
)
size = write_explorer(snakemake.output.html, data)
log.info("explorer of %d examples, %d methods: %.2f MB", len(traces), len(methods), size / 1e6)
