"""Snakemake adapter: token-level marginalisation (bounded path search) for one test set."""
# ruff: noqa: E402  (stderr goes to the log before anything else is imported)

import sys

sys.stderr = open(snakemake.log[0], "w")

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from multilabel_llm.datasets import load_canonical
from multilabel_llm.engine.loading import load_model
from multilabel_llm.engine.run import plan_run, read_pool, set_threads
from multilabel_llm.estimators import distribution_frame, normalise_rows, validate_distribution
from multilabel_llm.io import read_id_list, write_parquet
from multilabel_llm.marginalization import marginal_label_probs
from multilabel_llm.prompts import parse_output, pick_template

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

params = snakemake.params
settings = dict(params.settings)
estimate = settings.pop("estimate", "normalized")
model_cfg = dict(params.model)
prompt_cfg = dict(params.prompt)
dataset = load_canonical(Path(snakemake.input.examples).parent)
labels = list(dataset.labels)
ids = read_id_list(snakemake.input.ids)

set_threads(snakemake.threads)
model, tokenizer = load_model(model_cfg, adapter=model_cfg.get("adapter"))
# the engine's own plan: the same prompts (token ids), stop rule and label format as the traces
plan = plan_run(
    dataset,
    ids,
    tokenizer,
    prompt_cfg,
    params.demo_split,
    template=pick_template(prompt_cfg, params.loader, dataset.name),
    model_name=model_cfg.get("name", ""),
    pool_ids=read_pool(snakemake.input.get("demo_pool")),
)
label_format = plan.builder.spec.label_format


def parse(text):
    return parse_output(text, labels, label_format).labels


values, stats = [], []
for rid, prompt_ids in tqdm(
    list(zip(ids, plan.prompts, strict=True)), desc="marginalize", file=sys.stderr
):
    res = marginal_label_probs(
        model,
        tokenizer,
        "",
        labels,
        parse,
        prompt_ids=prompt_ids,
        is_complete=plan.stop_rule.text_done,
        finalize_text=plan.stop_rule.truncate,
        **settings,
    )
    values.append(res.probs(estimate))
    stats.append(
        {
            "id": rid,
            "explored_mass": res.explored_mass,
            "unexplored_mass": res.unexplored_mass,
            "unparsed_mass": res.unparsed_mass,
            "n_paths": res.n_paths,
            "n_expansions": res.n_expansions,
            "seconds": res.seconds,
            **{f"lower_{lab}": v for lab, v in zip(labels, res.lower, strict=True)},
        }
    )
values = np.asarray(values, dtype=float).reshape(len(ids), len(labels))
if not dataset.multilabel:
    values = normalise_rows(values)
frame = distribution_frame(ids, labels, values)
validate_distribution(frame, labels, dataset.multilabel, snakemake.output.dist)
stats = pd.DataFrame(stats)
write_parquet(snakemake.output.dist, frame)
write_parquet(snakemake.output.stats, stats)
logging.info(
    "%d examples: explored mass %.3f (mean), %.1f paths, %.1f expansions, %.2f s per example",
    len(ids),
    stats["explored_mass"].mean(),
    stats["n_paths"].mean(),
    stats["n_expansions"].mean(),
    stats["seconds"].mean(),
)
