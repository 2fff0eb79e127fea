"""Snakemake adapter: LoRA-finetune one model on one dataset's train split (paper §A.5)."""

import logging
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

from multilabel_llm.supervised.sft import train_sft_from_files  # noqa: E402

train_sft_from_files(
    Path(snakemake.input.table).parent,
    dict(snakemake.params.model),
    dict(snakemake.params.prompt),
    dict(snakemake.params.sft),
    snakemake.output.adapter,
    snakemake.params.checkpoints,
    snakemake.output.log_csv,
    testsets=dict(zip(snakemake.params.testsets, snakemake.input.testsets, strict=True)),
    loader=snakemake.params.loader,
    threads=snakemake.threads,
)
