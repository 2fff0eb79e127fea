"""Snakemake adapter: one attention.csv (engine) → its Table 6 summary row."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from multilabel_llm.analyses import mechanisms as analyses  # noqa: E402
from multilabel_llm.core.io import write_csv  # noqa: E402

attention = pd.read_csv(snakemake.input.attention)
try:
    summary = analyses.attention_summary(attention, min_step=snakemake.params.min_step)
except ValueError as err:
    raise ValueError(f"{snakemake.input.attention}: {err}") from None
write_csv(
    snakemake.output[0], analyses.tag(summary, **dict(snakemake.wildcards.items())), index=False
)
