"""File front ends of the supervised baselines: the canonical dataset, hidden states and
traces in, adapters, probes, Demux models and their distributions out (rules ``train_sft``,
``train_probes``, ``probe_distributions``, ``train_demux``, ``demux_distributions``).

Each reads its inputs, calls :mod:`.sft`, :mod:`.probes` or :mod:`.demux` and writes its
outputs atomically; none imports snakemake, so a stage runs from a notebook with plain paths.
The torch modules (SFT, Demux, the engine's thread setting) are imported by the front ends
that train or run them, so the probes' jobs start without torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import joblib
import pandas as pd

from multilabel_llm.core.io import atomic_path, read_id_list, write_csv, write_parquet
from multilabel_llm.data.canonical import load_canonical
from multilabel_llm.supervised.probes import (
    load_hidden,
    load_probe_data,
    probe_distribution,
    probe_scores,
)

log = logging.getLogger(__name__)

PathArg = str | os.PathLike


def train_sft_from_files(
    data_dir,
    model_cfg: dict,
    prompt_cfg: dict,
    cfg: dict,
    adapter_dir,
    checkpoint_dir,
    log_csv=None,
    *,
    testsets: dict | None = None,
    loader: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """The ``train_sft`` rule: LoRA-finetune ``model_cfg`` on the canonical dataset in
    ``data_dir``; ``testsets`` (name -> id list file) are kept out of the dev examples."""
    from multilabel_llm.engine.run import set_threads  # torch: off the probes' light path
    from multilabel_llm.supervised.sft import load_for_training, train_sft

    set_threads(threads)  # the job's share of cores, not all of them
    dataset = load_canonical(data_dir)
    # ids of every evaluated test set: kept out of the dev examples early stopping reads
    exclude = {name: read_id_list(path) for name, path in (testsets or {}).items()}
    model, tokenizer, qlora = load_for_training(model_cfg, cfg.get("qlora", False))
    frame = train_sft(
        model,
        tokenizer,
        dataset,
        prompt_cfg,
        cfg,
        adapter_dir=adapter_dir,
        checkpoint_dir=checkpoint_dir,
        log_csv=log_csv,
        qlora=qlora,
        loader=loader,
        model_cfg=model_cfg,
        exclude=exclude,
    )
    log.info("SFT done: %d optimizer steps, adapter in %s", len(frame), adapter_dir)
    return frame


def train_probes_from_files(
    table: PathArg,
    train_hidden: PathArg,
    train_traces: PathArg,
    eval_hidden: PathArg,
    eval_traces: PathArg,
    scores_path: PathArg,
    probes_path: PathArg,
    *,
    probes: Mapping,
) -> pd.DataFrame:
    """Linear probes on first-label hidden states (Gold / Pred / Pred 2+ / Perf): their
    scores → ``scores_path`` (CSV), the fitted probes → ``probes_path`` (joblib)."""
    dataset = load_canonical(Path(table).parent)
    train = load_probe_data(train_hidden, train_traces, dataset)
    evaluation = load_probe_data(eval_hidden, eval_traces, dataset)
    scores, fitted = probe_scores(
        train, evaluation, dataset.labels, dataset.multilabel, dict(probes)
    )
    log.info("probe scores:\n%s", scores.to_string(index=False))
    write_csv(scores_path, scores, index=False)
    with atomic_path(probes_path) as tmp:
        joblib.dump({"labels": list(dataset.labels), **fitted}, tmp)
    return scores


def probe_distribution_from_files(
    probes: PathArg, hidden: PathArg, ids_path: PathArg, dist: PathArg
) -> pd.DataFrame:
    """The gold-trained probes' probabilities on one test set's hidden states → ``dist``."""
    saved = joblib.load(probes)
    ids, states = load_hidden(hidden)
    wanted = read_id_list(ids_path)
    missing = sorted(set(wanted) - set(ids))
    if missing:
        raise ValueError(f"{hidden}: no hidden state for test-set ids {missing[:5]}")
    row = {i: k for k, i in enumerate(ids)}
    keep = [row[i] for i in wanted]
    frame = probe_distribution(saved["gold"], wanted, states[keep])
    write_parquet(dist, frame)
    log.info("wrote %d probe distributions to %s", len(frame), dist)
    return frame


def train_demux_from_files(
    table: PathArg,
    exclude: PathArg | Sequence[PathArg],
    model_path: PathArg,
    log_csv: PathArg,
    *,
    demux: Mapping,
    threads: int | None = None,
) -> pd.DataFrame:
    """Train the Demux encoder baseline on one dataset (paper §A.5, "BERT") → ``model_path``
    and its training log ``log_csv``; the ids of ``exclude`` (every evaluated test set's id
    list) are kept out of the dev examples early stopping reads."""
    from multilabel_llm.engine.run import set_threads  # torch: off the probes' light path
    from multilabel_llm.supervised.demux import load_encoder, save_demux, train_demux

    set_threads(threads)  # the job's share of cores, not all of them
    cfg = dict(demux)
    dataset = load_canonical(Path(table).parent)
    paths = [exclude] if isinstance(exclude, str) else list(exclude)
    excluded = {i for path in paths for i in read_id_list(path)}
    tokenizer, encoder, source = load_encoder(cfg["encoder"])
    model, frame = train_demux(
        dataset, cfg, tokenizer=tokenizer, encoder=encoder, exclude_ids=excluded
    )
    save_demux(model_path, model, dataset, cfg, source)
    write_csv(log_csv, frame, index=False)
    log.info("Demux trained on %s (encoder %s)", dataset.name, source)
    return frame


def demux_distribution_from_files(
    table: PathArg, model_path: PathArg, ids_path: PathArg, dist: PathArg
) -> pd.DataFrame:
    """Demux probabilities for one test set (sigmoid, or softmax single-label) → ``dist``."""
    from multilabel_llm.supervised.demux import demux_distribution  # torch

    dataset = load_canonical(Path(table).parent)
    ids = read_id_list(ids_path)
    frame = demux_distribution(model_path, dataset, ids)
    write_parquet(dist, frame)
    log.info("wrote %d Demux distributions to %s", len(frame), dist)
    return frame
