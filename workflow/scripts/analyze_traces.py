"""Snakemake adapter: one trace file → the §4/§D analysis CSVs (multilabel_llm.analyses)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from multilabel_llm import analyses  # noqa: E402
from multilabel_llm.datasets.canonical import load_canonical  # noqa: E402
from multilabel_llm.io import write_csv  # noqa: E402
from multilabel_llm.prompts import order_labels  # noqa: E402
from multilabel_llm.traces import read_traces  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO)
log = logging.getLogger("analyze_traces")

meta, traces = read_traces(snakemake.input.traces)
dataset = load_canonical(Path(snakemake.input.examples).parent)
gold = dict(zip(dataset.examples["id"].astype(str), dataset.examples["labels"], strict=True))
params = snakemake.params
# the order the instruction lists the labels in: the engine's record if it kept one
prompt_order = meta.info.get("prompt_labels") or order_labels(
    meta.labels, params.label_order, params.seed
)
log.info("%d traces, labels %s, prompt order %s", len(traces), meta.labels, prompt_order)

human = {str(i): row for i, row in dataset.human_distribution().to_dict(orient="index").items()}
tables = analyses.trace_analyses(
    traces, meta.labels, gold, prompt_order, human=human, label_format=meta.info.get("label_format")
)
keys = dict(snakemake.wildcards.items())
tables["multilabel_rate"] = analyses.tag(
    tables["multilabel_rate"], multilabel_ratio=params.multilabel_ratio
)
tables["label_order"] = analyses.tag(
    tables["label_order"], label_order=params.label_order, seed=params.seed
)
for name in analyses.TRACE_ANALYSES:
    write_csv(snakemake.output[name], analyses.tag(tables[name], **keys), index=False)
    log.info("%s: %d rows", name, len(tables[name]))
# what each analysis left out (also in coverage.csv)
for row in tables["coverage"].itertuples(index=False):
    log.info(
        "%s uses %d of %d outputs (dropped: %d unparsed, %d without a label step, %d with fewer "
        "than two labels)",
        row.analysis,
        row.n_used,
        row.n_outputs,
        row.n_dropped_unparsed,
        row.n_dropped_no_label_step,
        row.n_dropped_fewer_than_two_labels,
    )
first = tables["coverage"].iloc[0] if len(tables["coverage"]) else None
if first is not None:
    log.info(
        "label steps left out: %d repeats, %d of labels the output does not name; %d outputs "
        "went on with an item outside the label set; %d cut off after their last label "
        "(position cut_off)",
        first["n_repeat_steps"],
        first["n_unnamed_steps"],
        first["n_went_on_outside"],
        first["n_cut_off_last"],
    )
