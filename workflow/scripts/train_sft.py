"""Snakemake adapter: LoRA-finetune one model on one dataset's train split (paper §A.5)."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

from multilabel_llm.datasets.canonical import load_canonical
from multilabel_llm.engine.run import set_threads
from multilabel_llm.io import read_id_list
from multilabel_llm.sft import load_for_training, train_sft

set_threads(snakemake.threads)  # the job's share of cores, not all of them

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

cfg = dict(snakemake.params.sft)
model_cfg = dict(snakemake.params.model)
dataset = load_canonical(Path(snakemake.input.table).parent)
# ids of every evaluated test set: kept out of the dev examples early stopping reads
exclude = {
    name: read_id_list(path)
    for name, path in zip(snakemake.params.testsets, snakemake.input.testsets, strict=True)
}
model, tokenizer, qlora = load_for_training(model_cfg, cfg.get("qlora", False))
frame = train_sft(
    model,
    tokenizer,
    dataset,
    dict(snakemake.params.prompt),
    cfg,
    adapter_dir=snakemake.output.adapter,
    checkpoint_dir=snakemake.params.checkpoints,
    log_csv=snakemake.output.log_csv,
    qlora=qlora,
    loader=snakemake.params.loader,
    model_cfg=model_cfg,
    exclude=exclude,
)
logging.info("SFT done: %d optimizer steps, adapter in %s", len(frame), snakemake.output.adapter)
