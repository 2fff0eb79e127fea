"""Snakemake adapter: token-level marginalisation (bounded path search) for one test set.

Resumable: shards beside the output (``<method>.shards/``) survive a killed job, keyed by
everything that decides their content (see multilabel_llm.engine.run).
"""

import logging
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

from multilabel_llm.engine.jobs import marginalize_from_files  # noqa: E402

summary = marginalize_from_files(
    Path(snakemake.input.examples).parent,
    snakemake.input.ids,
    dict(snakemake.params.model),
    dict(snakemake.params.prompt),
    dict(snakemake.params.settings),
    snakemake.output.dist,
    snakemake.output.stats,
    demo_split=snakemake.params.demo_split,
    loader=snakemake.params.loader,
    adapter=snakemake.input.get("adapter"),
    threads=snakemake.threads,
    demo_pool=snakemake.input.get("demo_pool"),
    placeholders=dict(snakemake.wildcards.items()),  # an SFT slot's {dataset} adapter path
)
print(summary, file=sys.stderr)
