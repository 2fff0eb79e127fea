"""Snakemake adapter: the run's paper tables side by side with the paper's own numbers."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging

from multilabel_llm.report.paper_reference import compare_tables, read_reference, write_comparison

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

params = snakemake.params
# the reference CSVs are inputs, so a corrected transcription reruns this rule
reference = read_reference(snakemake.input.reference)
produced = {name: snakemake.input[name] for name in params.tables}
comparison = compare_tables(
    produced,
    reference,
    datasets=params.datasets,
    models=params.models,
    roles=params.roles,
)
cells = write_comparison(
    comparison, snakemake.output.csv, snakemake.output.md, snakemake.output.html
)
for table in comparison.tables:
    counts = table.cells["status"].value_counts().to_dict()
    logging.info("%s: %s", table.title, counts)
    for item in table.unmatched:
        logging.info("%s: ours without a paper counterpart: %s", table.title, item)
logging.info("%d cells written to %s", len(cells), snakemake.output.csv)
