"""Snakemake adapter: train the Demux encoder baseline on one dataset (paper §A.5, "BERT")."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

from multilabel_llm.core.io import read_id_list, write_csv
from multilabel_llm.data.canonical import load_canonical
from multilabel_llm.engine.run import set_threads
from multilabel_llm.supervised.demux import load_encoder, save_demux, train_demux

set_threads(snakemake.threads)  # the job's share of cores, not all of them

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

cfg = dict(snakemake.params.demux)
dataset = load_canonical(Path(snakemake.input.table).parent)
# ids of every evaluated test set: early stopping on dev must not see them
paths = snakemake.input.exclude
paths = [paths] if isinstance(paths, str) else list(paths)
exclude = {i for path in paths for i in read_id_list(path)}
tokenizer, encoder, source = load_encoder(cfg["encoder"])
model, frame = train_demux(dataset, cfg, tokenizer=tokenizer, encoder=encoder, exclude_ids=exclude)
save_demux(snakemake.output.model, model, dataset, cfg, source)
write_csv(snakemake.output.log_csv, frame, index=False)
logging.info("Demux trained on %s (encoder %s)", dataset.name, source)
