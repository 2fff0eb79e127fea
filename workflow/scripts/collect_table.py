"""Snakemake adapter: stack per-run analysis CSVs into one paper table (Tables 4, 6, 7, …)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from multilabel_llm.analyses import mechanisms as analyses  # noqa: E402
from multilabel_llm.core.io import write_csv  # noqa: E402
from multilabel_llm.report.html import read_tables  # noqa: E402

frame = read_tables(snakemake.input, snakemake.params.run_keys)
if snakemake.params.table == "table7" and not frame.empty:
    frame = analyses.label_order_table(frame)
write_csv(snakemake.output[0], frame, index=False)
