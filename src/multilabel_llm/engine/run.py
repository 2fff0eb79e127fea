"""Sharded, resumable trace extraction for one (dataset, model, prompt, test set).

Shards live in ``<out dir>/shards/`` (``shard-00000.jsonl.gz`` plus ``.hidden.npz`` when
hidden states are asked for), each written atomically; a rerun skips finished shards. A
``manifest.json`` fingerprints the run (prompts, label forms, generation settings): if it
changed, stale shards are deleted rather than mixed in. The merged ``traces.jsonl.gz`` (and
``hidden.npz``) are written last, atomically, so the Snakemake output exists only when whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..io import read_json, write_json, write_with
from ..prompts import PromptBuilder, resolve_prompt
from ..traces import TraceMeta, read_traces, write_traces
from .label_tokens import detect_label_tokens
from .tracing import StopRule, TraceEngine, common_prefix_len, finalize, first_label_hidden

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """Everything a run needs that does not depend on the model's weights."""

    builder: PromptBuilder
    labels: list[str]
    ids: list[str]
    prompts: list[list[int]]
    prefix_ids: list[int]
    label_tokens: object
    stop_rule: StopRule
    fingerprint: str


def plan_run(
    dataset,
    ids,
    tokenizer,
    prompt_cfg: dict,
    demo_split: str = "train",
    template: str | None = None,
    model_name: str = "",
    extra: dict | None = None,
    pool_ids=None,
):
    spec = resolve_prompt(prompt_cfg, dataset.name, template)
    builder = PromptBuilder.from_dataset(spec, dataset, demo_split, exclude=ids, pool_ids=pool_ids)
    frame = dataset.examples.set_index("id")
    missing = [i for i in ids if i not in frame.index]
    if missing:
        raise ValueError(f"{len(missing)} test ids not in dataset {dataset.name}: {missing[:5]}")
    texts = frame.loc[list(ids), "text"].tolist()
    prompts = [tokenizer(builder.prompt(t)).input_ids for t in texts]
    prefix_tok = tokenizer(builder.prefix()).input_ids
    prefix_ids = prefix_tok[: common_prefix_len(prefix_tok, prompts)]
    completion = builder.completion([])
    lead = completion[: len(completion) - len(completion.lstrip())] or " "
    label_tokens = detect_label_tokens(
        tokenizer,
        dataset.labels,
        spec.label_format,
        lead=lead,
        capitalised=bool(prompt_cfg.get("label_forms", {}).get("capitalised", True)),
        leading_space=bool(prompt_cfg.get("label_forms", {}).get("leading_space", True)),
    )
    stop_rule = StopRule(tokenizer, spec.label_format, spec.stop)
    digest = hashlib.sha256()
    for obj in (model_name, spec.__dict__, label_tokens.forms, ids, prompts, extra or {}):
        digest.update(json.dumps(obj, sort_keys=True, default=str).encode())
    return RunPlan(
        builder,
        list(dataset.labels),
        list(ids),
        prompts,
        prefix_ids,
        label_tokens,
        stop_rule,
        digest.hexdigest()[:16],
    )


def _prepare_shards(shard_dir: Path, fingerprint: str) -> None:
    manifest = shard_dir / "manifest.json"
    if manifest.is_file() and read_json(manifest).get("fingerprint") != fingerprint:
        log.warning(
            "%s: settings changed since the shards were written; discarding them", shard_dir
        )
        for f in shard_dir.glob("shard-*"):
            f.unlink()
    shard_dir.mkdir(parents=True, exist_ok=True)
    write_json(manifest, {"fingerprint": fingerprint})


def extract_traces(
    dataset,
    ids: list[str],
    model,
    tokenizer,
    prompt_cfg: dict,
    out_path,
    *,
    model_name: str = "",
    demo_split: str = "train",
    template: str | None = None,
    shard_size: int = 64,
    batch_size: int = 16,
    hidden_path=None,
    keep_forms: bool = True,
    on_shard: Callable[[int], None] | None = None,
    backend: str = "hf",
    pool_ids=None,
) -> dict:
    """Trace every id; returns a summary (counts, timings). See the module docstring."""
    out_path = Path(out_path)
    shard_dir = out_path.parent / "shards"
    hidden = hidden_path is not None
    plan = plan_run(
        dataset,
        ids,
        tokenizer,
        prompt_cfg,
        demo_split,
        template,
        model_name,
        {"hidden": hidden, "keep_forms": keep_forms},
        pool_ids,
    )
    spec = plan.builder.spec
    _prepare_shards(shard_dir, plan.fingerprint)
    meta = TraceMeta(
        labels=plan.labels,
        model=model_name,
        prompt=spec.name,
        forms=plan.label_tokens.meta_forms(),
        shared_first_tokens=plan.label_tokens.shared,
        info={
            "label_format": spec.label_format,
            "label_order": spec.label_order,
            "prompt_labels": plan.builder.labels,
            "max_new_tokens": spec.max_new_tokens,
            "prefix_tokens": len(plan.prefix_ids),
            "demo_split": demo_split,
            "demos": [{"text": t, "labels": labs} for t, labs in plan.builder.demos],
            "example_prompt": plan.builder.prompt("<query>"),
            "fingerprint": plan.fingerprint,
        },
    )
    if backend == "vllm":  # ``model`` is then the checkpoint path vLLM loads
        from .vllm_backend import VLLMTraceBackend

        if hidden:
            raise ValueError("hidden states need the hf backend (vLLM does not expose them)")
        engine = VLLMTraceBackend(
            str(model), plan.label_tokens, plan.stop_rule, spec.max_new_tokens
        )
        meta.info["logit_kind"] = "logprob"
    elif backend == "hf":
        engine = TraceEngine(
            model,
            tokenizer,
            plan.label_tokens,
            plan.stop_rule,
            spec.max_new_tokens,
            batch_size,
            hidden_states=hidden,
        )
        meta.info["logit_kind"] = "logit"
    else:
        raise ValueError(f"backend {backend!r}: expected 'hf' or 'vllm'")
    n = len(plan.ids)
    starts = list(range(0, n, shard_size))
    shard_paths = [shard_dir / f"shard-{k:05d}.jsonl.gz" for k in range(len(starts))]
    done = [k for k, p in enumerate(shard_paths) if p.is_file()]
    computed, t0 = [], time.perf_counter()
    bar = tqdm(
        total=n,
        initial=sum(min(shard_size, n - starts[k]) for k in done),
        unit="ex",
        desc=f"traces {dataset.name}/{model_name}/{spec.name}",
        mininterval=1,
    )
    for k, start in enumerate(starts):
        if shard_paths[k].is_file():
            continue
        if engine.prefix is None:
            engine.set_prefix(plan.prefix_ids)
        sl = slice(start, start + shard_size)
        raws = engine.run(plan.prompts[sl], progress=bar)
        traces = [
            finalize(
                i,
                raw,
                tokenizer,
                plan.label_tokens,
                plan.labels,
                spec.label_format,
                plan.stop_rule,
                keep_forms,
            )
            for i, raw in zip(plan.ids[sl], raws, strict=True)
        ]
        if hidden:
            states = [first_label_hidden(t, r) for t, r in zip(traces, raws, strict=True)]
            write_with(
                shard_paths[k].with_suffix("").with_suffix(".hidden.npz"),
                lambda tmp, s=states, i=plan.ids[sl]: _save_npz(tmp, i, s),
            )
        write_traces(shard_paths[k], meta, traces)  # last: its existence marks the shard done
        computed.append(k)
        if on_shard is not None:
            on_shard(k)
    bar.close()
    elapsed = time.perf_counter() - t0
    all_traces = []
    for p in shard_paths:
        all_traces.extend(read_traces(p)[1])
    n_bad = sum(not t.parse_ok for t in all_traces)
    meta.info.update({"n_examples": n, "n_unparseable": n_bad})
    write_traces(out_path, meta, all_traces)
    if hidden:
        ids_all, states_all = [], []
        for p in shard_paths:
            with np.load(p.with_suffix("").with_suffix(".hidden.npz")) as z:
                ids_all += z["ids"].tolist()
                states_all.append(z["states"])
        write_with(hidden_path, lambda tmp: _save_npz(tmp, ids_all, np.concatenate(states_all)))
    if n_bad:
        log.warning(
            "%d of %d outputs could not be parsed (traces keep them, pred_labels null)", n_bad, n
        )
    return {
        "n": n,
        "n_unparseable": n_bad,
        "computed_shards": computed,
        "skipped_shards": done,
        "seconds": elapsed,
    }


def _save_npz(tmp: Path, ids, states) -> None:
    states = (
        np.stack([np.asarray(s, dtype=np.float32) for s in states])
        if len(states)
        else np.zeros((0, 0), np.float32)
    )
    with open(tmp, "wb") as handle:  # np.savez would append .npz to a bare temp name
        np.savez(handle, ids=np.asarray([str(i) for i in ids]), states=states)


def read_pool(demo_pool) -> list[str] | None:
    """The shared demo pool's ids (rule demo_pool), or None: demos from the split minus the run."""
    from ..io import read_id_list

    return None if demo_pool is None else read_id_list(demo_pool)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def extract_traces_from_files(
    data_dir,
    ids_path,
    model_cfg: dict,
    prompt_cfg: dict,
    out_path,
    *,
    hidden_path=None,
    demo_split: str = "train",
    loader: str | None = None,
    adapter: str | None = None,
    threads: int | None = None,
    demo_pool=None,
) -> dict:
    """The ``extract_traces`` rule: canonical dataset dir + id list -> traces (+ hidden)."""
    from ..datasets.canonical import load_canonical
    from ..io import read_id_list
    from ..prompts import pick_template
    from .loading import load_model, resolve_checkpoint

    dataset = load_canonical(data_dir)
    ids = read_id_list(ids_path)
    set_threads(threads or model_cfg.get("threads"))
    backend = model_cfg.get("backend", "hf")
    if backend == "vllm":
        from .loading import load_tokenizer

        model, tokenizer = resolve_checkpoint(model_cfg), load_tokenizer(model_cfg)
    else:
        model, tokenizer = load_model(model_cfg, adapter=adapter or model_cfg.get("adapter"))
    return extract_traces(
        dataset,
        ids,
        model,
        tokenizer,
        prompt_cfg,
        out_path,
        model_name=model_cfg.get("name", ""),
        demo_split=demo_split,
        template=pick_template(prompt_cfg, loader, dataset.name),
        shard_size=int(model_cfg.get("shard_size", 64)),
        batch_size=int(model_cfg.get("batch_size", 16)),
        hidden_path=hidden_path,
        backend=backend,
        pool_ids=read_pool(demo_pool),
    )


def breakdown_from_files(
    kind: str,
    data_dir,
    ids_path,
    model_cfg: dict,
    prompt_cfg: dict,
    out_path,
    *,
    demo_split: str = "train",
    adapter: str | None = None,
    threads: int | None = None,
    demo_pool=None,
):
    """The ``score_unary`` / ``score_binary`` rules: write ``{kind}.parquet``."""
    from ..datasets.canonical import load_canonical
    from ..io import read_id_list, write_parquet
    from . import breakdown
    from .loading import load_model

    if kind not in ("unary", "binary"):
        raise ValueError(f"breakdown kind {kind!r}: expected 'unary' or 'binary'")
    dataset = load_canonical(data_dir)
    ids = read_id_list(ids_path)
    set_threads(threads or model_cfg.get("threads"))
    model, tokenizer = load_model(model_cfg, adapter=adapter or model_cfg.get("adapter"))
    opts = prompt_cfg.get("breakdown") or {}
    scorer = breakdown.score_unary if kind == "unary" else breakdown.score_binary
    frame = scorer(
        model,
        tokenizer,
        dataset,
        ids,
        demo_split=demo_split,
        n_shots=int(opts.get("n_shots", 10)),
        seed=int(opts.get("seed", 0)),
        batch_size=int(opts.get("batch_size", model_cfg.get("batch_size", 32))),
        pool_ids=read_pool(demo_pool),
    )
    write_parquet(out_path, frame)
    return frame


def attention_from_files(
    data_dir,
    traces_path,
    model_cfg: dict,
    prompt_cfg: dict,
    out_path,
    *,
    demo_split: str = "train",
    loader: str | None = None,
    adapter: str | None = None,
    threads: int | None = None,
    demo_pool=None,
):
    """The ``extract_attention`` rule: Table 6 attention masses for traced examples."""
    from ..datasets.canonical import load_canonical
    from ..io import write_csv
    from ..prompts import pick_template
    from .attention import attention_summary
    from .loading import load_model

    dataset = load_canonical(data_dir)
    meta, traces = read_traces(traces_path)
    ids = [t.id for t in traces]
    set_threads(threads or model_cfg.get("threads"))
    model, tokenizer = load_model(
        {**model_cfg, "attn_implementation": "eager"}, adapter=adapter or model_cfg.get("adapter")
    )
    plan = plan_run(
        dataset,
        ids,
        tokenizer,
        prompt_cfg,
        demo_split,
        pick_template(prompt_cfg, loader, dataset.name),
        meta.model,
        pool_ids=read_pool(demo_pool),
    )
    prompts = dict(zip(plan.ids, plan.prompts, strict=True))
    frame = attention_summary(model, tokenizer, prompts, traces)
    write_csv(out_path, frame, index=False)
    return frame
