"""Sharded, resumable trace extraction for one (dataset, model, prompt, test set).

Shards live in ``<out dir>/shards/`` (``shard-00000.jsonl.gz`` plus ``.hidden.npz`` when
hidden states are asked for), each written atomically; a rerun skips finished shards. A
``manifest.json`` holds a digest of everything that decides a shard's content: the prompts and
label forms, the ids, the generation settings, the shard layout, the engine version, the
resolved checkpoint (GGUF file / local directory / hub id and revision), the adapter's bytes,
the dtype and a probe of the loaded weights. If any of it changed, the stale shards are deleted
rather than mixed in, and the log says which part changed. The merged ``traces.jsonl.gz`` (and
``hidden.npz``) are written last, atomically, after checking that they hold exactly the run's
ids, so the Snakemake output exists only when whole. Token-level marginalisation
(:func:`marginalize`) resumes the same way from ``<method>.shards/``.

The model's identity (checkpoint, adapter, weight probe) comes from engine/identity.py; the
rules' file front-ends (load the dataset and the model, then call one function here) are in
engine/jobs.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from multilabel_llm import __version__
from multilabel_llm.core.distributions import (
    distribution_frame,
    normalise_rows,
    validate_distribution,
)
from multilabel_llm.core.io import read_id_list, read_json, write_json, write_parquet, write_with
from multilabel_llm.core.traces import TraceMeta, read_traces, write_traces
from multilabel_llm.data.prompts import (
    PromptBuilder,
    ResolvedPrompt,
    parse_output,
    resolve_prompt_config,
)
from multilabel_llm.engine.backend import as_backend
from multilabel_llm.engine.identity import short_digest
from multilabel_llm.engine.label_tokens import detect_label_tokens
from multilabel_llm.engine.tracing import StopRule, common_prefix_len, finalize, first_label_hidden
from multilabel_llm.engine.version import ENGINE_VERSION

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
    parts: dict  # the fingerprint's pieces, for a shard manifest that names what changed
    n_truncated: int = 0  # query texts cut to fit the context (too_long="truncate")


def plan_run(
    dataset,
    ids,
    tokenizer,
    prompt: ResolvedPrompt | dict,
    demo_split: str = "train",
    template: str | None = None,
    model_name: str = "",
    extra: dict | None = None,
    pool_ids=None,
    *,
    max_context: int | None = None,
    too_long: str = "fail",
):
    """Prompts, label tokens and stop rule of one run; see :class:`RunPlan`.

    ``prompt``: the prompt resolved for this dataset (engine/jobs.py resolves it once per
    job); a raw prompt config (the CLI, tests) is resolved here with ``template``. What needs
    the tokenizer (the label forms' token ids, the stop rule, an ``auto`` answer budget) is
    resolved here, once, into the plan.

    ``max_context`` (the model's context in tokens) bounds prompt + answer; prompts longer
    than that fail the run naming how many and the longest, or with ``too_long="truncate"``
    have their query text cut to fit (the count is logged and kept in the plan).
    """
    if too_long not in ("fail", "truncate"):
        raise ValueError(
            f"model config key 'too_long_prompts': {too_long!r}; expected 'fail' or 'truncate'"
        )
    prompt = _resolved(prompt, dataset.name, template)
    spec = replace(prompt.spec)  # a copy: the budget is resolved below, the prompt stays as given
    builder = PromptBuilder.from_dataset(spec, dataset, demo_split, exclude=ids, pool_ids=pool_ids)
    builder.attach_tokenizer(tokenizer)  # renders `chat_template: true` prompts
    spec.max_new_tokens = builder.max_new_tokens(tokenizer)  # "auto": the longest answer's tokens
    frame = dataset.examples.set_index("id")
    missing = [i for i in ids if i not in frame.index]
    if missing:
        raise ValueError(f"{len(missing)} test ids not in dataset {dataset.name}: {missing[:5]}")
    texts = frame.loc[list(ids), "text"].tolist()
    prompts = [tokenizer(builder.prompt(t)).input_ids for t in texts]
    n_cut = 0
    if max_context:
        n_cut = _fit_context(
            builder,
            tokenizer,
            list(ids),
            texts,
            prompts,
            max_context,
            spec.max_new_tokens,
            too_long,
        )
    prefix_tok = tokenizer(builder.prefix()).input_ids
    prefix_ids = prefix_tok[: common_prefix_len(prefix_tok, prompts)]
    completion = builder.completion([])
    lead = completion[: len(completion) - len(completion.lstrip())] or " "
    label_tokens = detect_label_tokens(
        tokenizer,
        dataset.labels,
        spec.label_format,
        lead=lead,
        capitalised=prompt.capitalised,
        leading_space=prompt.leading_space,
    )
    stop_rule = StopRule(tokenizer, spec.label_format, spec.stop)
    pieces = (model_name, spec.__dict__, label_tokens.forms, ids, prompts, extra or {})
    digest = hashlib.sha256()
    for obj in pieces:
        digest.update(json.dumps(obj, sort_keys=True, default=str).encode())
    names = ("model_name", "prompt", "label_forms", "ids", "prompt_tokens", "settings")
    return RunPlan(
        builder,
        list(dataset.labels),
        list(ids),
        prompts,
        prefix_ids,
        label_tokens,
        stop_rule,
        digest.hexdigest()[:16],
        dict(zip(names, pieces, strict=True)),
        n_cut,
    )


def _resolved(prompt: ResolvedPrompt | dict, dataset_name: str, template: str | None):
    """``prompt`` as resolved for the dataset (a raw config resolved with ``template``)."""
    if isinstance(prompt, ResolvedPrompt):
        return prompt
    return resolve_prompt_config(prompt, dataset_name, template)


def _fit_context(builder, tokenizer, ids, texts, prompts, max_context, max_new, too_long) -> int:
    """Check every prompt leaves ``max_new`` tokens of context; cut query texts if asked.

    Mutates ``prompts`` (and ``texts``) in place; returns how many query texts were cut.
    """
    budget = max_context - max_new
    over = [j for j, p in enumerate(prompts) if len(p) > budget]
    if not over:
        return 0
    longest = max(over, key=lambda j: len(prompts[j]))
    if too_long != "truncate":
        raise ValueError(
            f"{len(over)} of {len(prompts)} prompts do not fit the model's context of "
            f"{max_context} tokens with {max_new} left for the answer (longest: id "
            f"{ids[longest]!r}, {len(prompts[longest])} prompt tokens); shorten those texts, or "
            "set the model config key 'too_long_prompts: truncate' to cut the query text to fit"
        )
    for j in over:
        text = texts[j]
        while len(prompts[j]) > budget:
            text_ids = tokenizer(text, add_special_tokens=False).input_ids
            if not text_ids:  # the instruction and demos alone overflow: nothing to cut
                raise ValueError(
                    f"id {ids[j]!r}: the prompt without its query text is already "
                    f"{len(prompts[j])} tokens, over the context of {max_context} less "
                    f"{max_new} for the answer; use fewer or shorter demonstrations"
                )
            # cut the overflow (re-tokenising may merge tokens at the cut, hence the loop)
            keep = max(0, len(text_ids) - (len(prompts[j]) - budget))
            text = tokenizer.decode(text_ids[:keep])
            prompts[j] = tokenizer(builder.prompt(text)).input_ids
        texts[j] = text
    log.warning(
        "%d of %d query texts were cut to fit the model's context of %d tokens (%d left for "
        "the answer; longest prompt was id %r) because too_long_prompts is 'truncate'",
        len(over),
        len(prompts),
        max_context,
        max_new,
        ids[longest],
    )
    return len(over)


class ShardStore:
    """Resumable shards of one run under ``shard_dir``, keyed by a manifest.

    ``components`` maps a name (``prompts``, ``checkpoint`` ...) to anything JSON-able that
    decides the shards' content; the shard layout and :data:`ENGINE_VERSION` are added here.
    Each component is digested on its own so that a mismatch log names what changed.
    """

    def __init__(self, shard_dir, ids, shard_size: int, components: dict):
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size {shard_size!r}: expected a positive integer")
        self.dir = Path(shard_dir)
        self.ids = [str(i) for i in ids]
        self.size = shard_size
        self.components = {k: short_digest(v) for k, v in components.items()}
        self.components["shard_layout"] = short_digest({"shard_size": shard_size, "n": len(ids)})
        self.components["engine"] = short_digest({"engine": ENGINE_VERSION, "package": __version__})
        self.key = short_digest(self.components)
        self.starts = list(range(0, len(self.ids), shard_size))

    def path(self, k: int, suffix: str = ".jsonl.gz") -> Path:
        return self.dir / f"shard-{k:05d}{suffix}"

    def ids_of(self, k: int) -> list[str]:
        return self.ids[self.starts[k] : self.starts[k] + self.size]

    def prepare(self) -> None:
        """Discard shards written under another key, then record this run's manifest."""
        manifest = self.dir / "manifest.json"
        stale = sorted(self.dir.glob("shard-*")) if self.dir.is_dir() else []
        try:
            old = read_json(manifest) if manifest.is_file() else {}
        except (OSError, ValueError):  # a torn or foreign manifest vouches for nothing
            old = {}
        if stale and old.get("key") != self.key:
            before = old.get("components") or {}
            changed = sorted(k for k in self.components if before.get(k) != self.components[k])
            log.warning(
                "%s: %s changed since its %d shard files were written; discarding them",
                self.dir,
                ", ".join(changed) if before else "the manifest (missing or unreadable)",
                len(stale),
            )
            for f in stale:
                f.unlink()
        write_json(  # creates the directory; an unwritable one is named in the error
            manifest,
            {
                "key": self.key,
                "components": self.components,
                "n": len(self.ids),
                "shard_size": self.size,
            },
        )

    def check(self, k: int, ids, what: str) -> None:
        """A finished shard must hold exactly its slice of the ids (never a short merge)."""
        got, want = [str(i) for i in ids], self.ids_of(k)
        if got != want:
            missing = [i for i in want if i not in set(got)]
            extra = [i for i in got if i not in set(want)]
            raise RuntimeError(
                f"{self.path(k, what)}: holds {len(got)} ids where the run expects {len(want)} "
                f"(missing {missing[:5]}, unexpected {extra[:5]}); the shards do not belong to "
                f"this run: delete {self.dir} and rerun"
            )


def _model_components(plan: RunPlan, backend, identity: dict | None) -> dict:
    """What keys a run's shards: its plan, the engine, the model's identity, and what the
    backend says of the loaded model (weight probe and dtype; vLLM's version and settings)."""
    return {
        **plan.parts,
        "backend": backend.name,
        "model": identity or {},
        **backend.shard_components(),
    }


def extract_traces(
    dataset,
    ids: list[str],
    model,
    tokenizer,  # the backend's own when ``model`` is a backend
    prompt: ResolvedPrompt | dict,
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
    pool_ids=None,
    identity: dict | None = None,
    max_context: int | None = None,
    too_long: str = "fail",
) -> dict:
    """Trace every id; returns a summary (counts, timings). See the module docstring.

    ``model`` is a backend (engine/backend.py: Hugging Face or vLLM) or a bare transformers
    model, which runs on the Hugging Face engine.
    ``identity`` (see :func:`run_identity`) says which checkpoint and adapter ``model`` was
    loaded from; with the weight probe and dtype it keys the resumable shards.
    ``max_context`` (default: the model config's ``max_position_embeddings``) and
    ``too_long`` decide what happens to prompts that do not fit (see :func:`plan_run`).
    ``prompt`` and ``template``: as in :func:`plan_run`.
    """
    out_path = Path(out_path)
    shard_dir = out_path.parent / "shards"
    hidden = hidden_path is not None
    backend = as_backend(model, tokenizer)
    plan = plan_run(
        dataset,
        ids,
        tokenizer,
        prompt,
        demo_split,
        template,
        model_name,
        {"hidden": hidden, "keep_forms": keep_forms},
        pool_ids,
        max_context=max_context or backend.context_length(),
        too_long=too_long,
    )
    spec = plan.builder.spec
    store = ShardStore(shard_dir, plan.ids, shard_size, _model_components(plan, backend, identity))
    store.prepare()
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
            "label_scoring": spec.label_scoring,
            "prefix_tokens": len(plan.prefix_ids),
            "demo_split": demo_split,
            "demos": [{"text": t, "labels": labs} for t, labs in plan.builder.demos],
            "example_prompt": plan.builder.prompt("<query>"),
            "fingerprint": plan.fingerprint,
            **({"n_truncated": plan.n_truncated} if plan.n_truncated else {}),
        },
    )
    engine = backend.tracer(
        plan.label_tokens,
        plan.stop_rule,
        spec.max_new_tokens,
        batch_size,
        hidden_states=hidden,
        label_scoring=spec.label_scoring,
    )
    meta.info["logit_kind"] = engine.logit_kind  # "logprob" (vLLM, lookahead) or "logit"
    meta.info["engine"] = backend.name
    n = len(plan.ids)
    starts = store.starts
    shard_paths = [store.path(k) for k in range(len(starts))]
    done = [k for k, p in enumerate(shard_paths) if p.is_file()]
    computed, t0 = [], time.perf_counter()
    bar = tqdm(
        total=n,
        initial=sum(len(store.ids_of(k)) for k in done),
        unit="ex",
        desc=f"traces {dataset.name}/{model_name}/{spec.name}",
        mininterval=1,
    )
    for k, start in enumerate(starts):
        if shard_paths[k].is_file():
            continue
        if engine.prefix is None:
            engine.set_prefix(plan.prefix_ids)
        in_shard = slice(start, start + shard_size)
        raws = engine.run(plan.prompts[in_shard], progress=bar)
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
            for i, raw in zip(plan.ids[in_shard], raws, strict=True)
        ]
        if hidden:
            states = [first_label_hidden(t, r) for t, r in zip(traces, raws, strict=True)]
            write_with(
                store.path(k, ".hidden.npz"),
                lambda tmp, s=states, i=plan.ids[in_shard]: _save_npz(tmp, i, s),
            )
        write_traces(shard_paths[k], meta, traces)  # last (meta sidecar first): marks it done
        computed.append(k)
        if on_shard is not None:
            on_shard(k)
    bar.close()
    elapsed = time.perf_counter() - t0
    all_traces = []
    for k, p in enumerate(shard_paths):
        shard = read_traces(p)[1]
        store.check(k, [t.id for t in shard], ".jsonl.gz")
        all_traces.extend(shard)
    n_bad = sum(not t.parse_ok for t in all_traces)
    meta.info.update({"n_examples": n, "n_unparseable": n_bad})
    if hidden:  # read (and check) before writing anything, so both outputs appear or neither
        ids_all, states_all = [], []
        for k in range(len(starts)):
            with np.load(store.path(k, ".hidden.npz")) as z:
                store.check(k, z["ids"].tolist(), ".hidden.npz")
                ids_all += z["ids"].tolist()
                states_all.append(z["states"])
    write_traces(out_path, meta, all_traces)
    if hidden:
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
    return None if demo_pool is None else read_id_list(demo_pool)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def marginalize(
    dataset,
    ids: list[str],
    model,
    tokenizer,
    prompt: ResolvedPrompt | dict,
    settings: dict,
    dist_path,
    stats_path,
    *,
    model_name: str = "",
    demo_split: str = "train",
    template: str | None = None,
    shard_size: int = 16,
    identity: dict | None = None,
    on_shard: Callable[[int], None] | None = None,
    pool_ids=None,
    max_context: int | None = None,
    too_long: str = "fail",
) -> dict:
    """Token-level marginalisation of every id (rule marginalize), resumable like the traces.

    ``settings`` are the method's params (:class:`~multilabel_llm.engine.hf.search_settings.
    SearchSettings` fields plus ``estimate``). Shards (one parquet of values and path
    statistics each) live in ``<dist stem>.shards/`` beside ``dist_path``, keyed like the trace
    shards plus the search settings; the two outputs are written last, after the id check.
    ``model`` is a backend that can marginalise (Hugging Face) or a bare transformers model;
    ``prompt`` and ``template``: as in :func:`plan_run`.
    """
    settings = dict(settings)
    estimate = settings.pop("estimate", "normalized")
    dist_path, stats_path = Path(dist_path), Path(stats_path)
    backend = as_backend(model, tokenizer)
    # the engine's own plan: the same prompts (token ids), stop rule and label format as traces
    plan = plan_run(
        dataset,
        ids,
        tokenizer,
        prompt,
        demo_split,
        template,
        model_name,
        {"marginalization": settings, "estimate": estimate},
        pool_ids,
        max_context=max_context or backend.context_length(),
        too_long=too_long,
    )
    labels = plan.labels
    label_format = plan.builder.spec.label_format
    store = ShardStore(
        dist_path.parent / f"{dist_path.stem}.shards",
        plan.ids,
        shard_size,
        _model_components(plan, backend, identity),
    )
    store.prepare()

    def parse(text):
        return parse_output(text, labels, label_format).labels

    done = [k for k in range(len(store.starts)) if store.path(k, ".parquet").is_file()]
    computed = []
    bar = tqdm(
        total=len(plan.ids), initial=sum(len(store.ids_of(k)) for k in done), desc="marginalize"
    )
    for k, start in enumerate(store.starts):
        if k in done:
            continue
        rows = []
        # the shard's searches advance together, one batched forward per round (same paths
        # and masses as marginal_label_probs per example: tests/engine/test_marginalization_batched.py)
        results = backend.marginals(
            plan.prompts[start : start + shard_size],
            labels,
            parse,
            settings,
            is_complete=plan.stop_rule.text_done,
            finalize_text=plan.stop_rule.truncate,
            batch_size=shard_size,
        )
        for rid, res in zip(store.ids_of(k), results, strict=True):
            rows.append(
                {
                    "id": rid,
                    "explored_mass": res.explored_mass,
                    "unexplored_mass": res.unexplored_mass,
                    "unparsed_mass": res.unparsed_mass,
                    "n_paths": res.n_paths,
                    "n_expansions": res.n_expansions,
                    "seconds": res.seconds,
                    **{f"lower_{lab}": v for lab, v in zip(labels, res.lower, strict=True)},
                    # positional columns: label names may clash with the stats columns
                    **{f"value_{j}": v for j, v in enumerate(res.probs(estimate))},
                }
            )
            bar.update(1)
        write_parquet(store.path(k, ".parquet"), pd.DataFrame(rows))
        computed.append(k)
        if on_shard is not None:
            on_shard(k)
    bar.close()
    parts = []
    for k in range(len(store.starts)):
        part = pd.read_parquet(store.path(k, ".parquet"))
        store.check(k, part["id"].tolist(), ".parquet")
        parts.append(part)
    merged = pd.concat(parts, ignore_index=True)
    value_cols = [f"value_{j}" for j in range(len(labels))]
    values = merged[value_cols].to_numpy(dtype=float).reshape(len(plan.ids), len(labels))
    if not dataset.multilabel:
        values = normalise_rows(values)
    frame = distribution_frame(plan.ids, labels, values)
    validate_distribution(frame, labels, dataset.multilabel, str(dist_path))
    stats = merged.drop(columns=value_cols).reset_index(drop=True)
    write_parquet(stats_path, stats)
    write_parquet(dist_path, frame)  # last: the distribution is what downstream rules read
    if len(stats):
        log.info(
            "%d examples: explored mass %.3f (mean), %.1f paths, %.1f expansions, "
            "%.2f s per example",
            len(stats),
            stats["explored_mass"].mean(),
            stats["n_paths"].mean(),
            stats["n_expansions"].mean(),
            stats["seconds"].mean(),
        )
    return {"n": len(plan.ids), "computed_shards": computed, "skipped_shards": done}
