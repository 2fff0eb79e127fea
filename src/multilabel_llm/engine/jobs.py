"""The inference rules' file front-ends: files and configs in, one engine call, files out.

Each rule (``extract_traces``, ``score_breakdown``, ``extract_attention``,
``marginalize``) opens its run the same way (:func:`open_run`: the canonical dataset, the
job's threads, the backend that runs the job, with the model and its adapter placed as its
:class:`ModelSpec` says), resolves its prompt config once for the dataset
(:class:`~multilabel_llm.data.prompts.ResolvedPrompt`), and then calls one function of
engine/run.py or breakdown.py, or the backend itself (attention weights). The workflow scripts
are adapters over these functions; engine/run.py never imports this module.

The backend is the model config's ``backend`` (``hf`` or ``vllm``) when it can do what the job
needs, else Hugging Face (:func:`~.backend.engine_for`: hidden states, attention weights,
the lookahead scoring and marginalisation run on Hugging Face).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from multilabel_llm.core.io import read_id_list, write_csv, write_parquet
from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.canonical import CanonicalDataset, load_canonical
from multilabel_llm.data.prompts import ResolvedPrompt, pick_template, resolve_prompt_config
from multilabel_llm.engine.backend import backend_class, engine_for
from multilabel_llm.engine.breakdown import SCORERS
from multilabel_llm.engine.identity import file_digest, run_identity
from multilabel_llm.engine.loading import ModelSpec
from multilabel_llm.engine.run import (
    ShardStore,
    extract_traces,
    marginalize,
    plan_run,
    read_pool,
    set_threads,
)

log = logging.getLogger(__name__)

# Loaded backends kept for the process's lifetime, keyed by everything that decided the load;
# None (the default) = each job loads its own and closes it. An engine service
# (engine/service.py) turns it on: the jobs of one (dataset, model, engine) share one load.
_POOL: dict[str, object] | None = None


def keep_engines_loaded() -> None:
    """From now on, :func:`open_run` keeps every backend it loads and hands it out again to a
    job asking for the same model, adapter, placement and engine."""
    global _POOL
    if _POOL is None:
        _POOL = {}


def close_kept_engines() -> None:
    """Close every kept backend (the engine service's shutdown)."""
    global _POOL
    pool, _POOL = _POOL or {}, None
    for backend in pool.values():
        backend.close()


def _load_backend(engine: str, model_cfg: dict, spec: ModelSpec, adapter: str | None):
    if _POOL is None:
        return backend_class(engine).load(model_cfg, spec, adapter)
    key = json.dumps([engine, model_cfg, asdict(spec), adapter], sort_keys=True, default=str)
    if key not in _POOL:
        log.info(
            "loading %s on %s (kept for the service's next jobs)", model_cfg.get("name"), engine
        )
        _POOL[key] = backend_class(engine).load(model_cfg, spec, adapter)
    else:
        log.info("%s on %s: already loaded by this engine service", model_cfg.get("name"), engine)
    return _POOL[key]


def release(backend) -> None:
    """A job is done with its backend: closed, unless an engine service keeps it loaded."""
    if _POOL is None or backend not in _POOL.values():
        backend.close()


@dataclass
class OpenedRun:
    """A run's dataset and loaded backend: what every inference rule starts from."""

    dataset: CanonicalDataset
    backend: object  # engine/backend.py: the Hugging Face or vLLM engine with the model
    spec: ModelSpec  # how the model was loaded (batch size, placement)
    adapter: str | None  # the LoRA applied on top, if any (the argument, else the config's)

    @property
    def tokenizer(self):
        return self.backend.tokenizer

    @property
    def model(self):
        """The transformers model (jobs that need one open their run with that need)."""
        if self.backend.name != "hf":
            raise TypeError(f"the {self.backend.name} backend holds no transformers model")
        return self.backend.model


def open_run(
    data_dir,
    model_cfg: dict,
    *,
    adapter: str | None = None,
    threads: int | None = None,
    resources: dict | None = None,
    placeholders: dict | None = None,
    needs: tuple[str, ...] = (),
) -> OpenedRun:
    """Load the canonical dataset in ``data_dir`` and the model of ``model_cfg`` on the engine
    that can do what the job ``needs`` (names of :data:`~.backend.NEEDS`).

    ``threads`` (else the config's ``threads``) bounds torch's CPU threads. ``adapter`` (else
    the config's ``adapter``) is applied on top; ``placeholders`` fill a ``{dataset}``-style
    adapter path (an SFT slot keeps one adapter per dataset). ``resources``: the model's size
    class (GPUs, batch size; see engine/model_spec.py).
    """
    dataset = load_canonical(data_dir)
    set_threads(threads or model_cfg.get("threads"))
    adapter = adapter or model_cfg.get("adapter")
    if adapter and placeholders:
        adapter = str(adapter).format(**placeholders)
    spec = ModelSpec.from_config(model_cfg, resources)
    backend = _load_backend(engine_for(model_cfg, *needs), model_cfg, spec, adapter)
    return OpenedRun(dataset, backend, spec, adapter)


def resolved_prompt(
    prompt_cfg: dict, dataset: CanonicalDataset, loader: str | None
) -> ResolvedPrompt:
    """The job's prompt config resolved once for its dataset: the template of its loader,
    else of its name, else ``default``."""
    template = pick_template(prompt_cfg, loader, dataset.name)
    return resolve_prompt_config(prompt_cfg, dataset.name, template)


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
    resources: dict | None = None,
) -> dict:
    """The ``extract_traces`` rule: canonical dataset dir + id list -> traces (+ hidden)."""
    needs = ("hidden_states",) if hidden_path else ()
    if (prompt_cfg.get("label_scoring") or "first_token") != "first_token":
        needs += ("lookahead",)
    run = open_run(
        data_dir, model_cfg, adapter=adapter, threads=threads, resources=resources, needs=needs
    )
    try:
        return extract_traces(
            run.dataset,
            read_id_list(ids_path),
            run.backend,
            run.tokenizer,
            resolved_prompt(prompt_cfg, run.dataset, loader),
            out_path,
            model_name=model_cfg.get("name", ""),
            demo_split=demo_split,
            shard_size=int(model_cfg.get("shard_size", 64)),
            batch_size=run.spec.batch_size,
            hidden_path=hidden_path,
            pool_ids=read_pool(demo_pool),
            identity=run_identity(model_cfg, run.adapter),
            max_context=model_cfg.get("max_context"),
            too_long=model_cfg.get("too_long_prompts", "fail"),
        )
    finally:
        release(run.backend)


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
    resources: dict | None = None,
):
    """Rule ``score_breakdown``: write ``{kind}.parquet``."""
    if kind not in SCORERS:
        raise ValueError(f"breakdown kind {kind!r}: expected one of {list(SCORERS)}")
    run = open_run(data_dir, model_cfg, adapter=adapter, threads=threads, resources=resources)
    opts = prompt_cfg.get("breakdown") or {}
    ids = read_id_list(ids_path)
    # One resumable shard keyed by every input that decides the scores: a rerun with the
    # same inputs (e.g. its engine service restarted for another prompt's traces) reuses it.
    store = ShardStore(
        Path(out_path).parent / f"{kind}.shards",
        ids,
        max(len(ids), 1),
        {
            "kind": kind,
            "ids": ids,
            "breakdown": opts,
            "demo_split": demo_split,
            "data": file_digest(Path(data_dir) / "examples.parquet"),
            "demo_pool": file_digest(demo_pool) if demo_pool else None,
            "backend": run.backend.name,
            "model": run_identity(model_cfg, run.adapter),
            **run.backend.shard_components(),
        },
    )
    store.prepare()
    shard = store.path(0, ".parquet")
    try:
        if shard.is_file():
            frame = pd.read_parquet(shard)
            log.info("%s scores: reused the finished shard %s (0 of 1 computed)", kind, shard)
        else:
            frame = SCORERS[kind](
                run.backend,
                run.tokenizer,
                run.dataset,
                ids,
                demo_split=demo_split,
                n_shots=int(opts.get("n_shots", 10)),
                seed=int(opts.get("seed", 0)),
                batch_size=int(opts.get("batch_size", run.spec.batch_size)),
                pool_ids=read_pool(demo_pool),
            )
            frame.attrs["engine"] = run.backend.name
            write_parquet(shard, frame)
    finally:
        release(run.backend)
    frame.attrs["engine"] = run.backend.name
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
    resources: dict | None = None,
):
    """The ``extract_attention`` rule: Table 6 attention masses for traced examples."""
    meta, traces = read_traces(traces_path)
    eager = {**model_cfg, "attn_implementation": "eager"}  # attention weights need eager
    run = open_run(
        data_dir,
        eager,
        adapter=adapter,
        threads=threads,
        resources=resources,
        needs=("attention",),
    )
    plan = plan_run(
        run.dataset,
        [t.id for t in traces],
        run.tokenizer,
        resolved_prompt(prompt_cfg, run.dataset, loader),
        demo_split,
        model_name=meta.model,
        pool_ids=read_pool(demo_pool),
        max_context=model_cfg.get("max_context") or run.backend.context_length(),
        too_long=model_cfg.get("too_long_prompts", "fail"),
    )
    prompts = dict(zip(plan.ids, plan.prompts, strict=True))
    frame = run.backend.label_step_attention(prompts, traces)
    write_csv(out_path, frame, index=False)
    return frame


def marginalize_from_files(
    data_dir,
    ids_path,
    model_cfg: dict,
    prompt_cfg: dict,
    settings: dict,
    dist_path,
    stats_path,
    *,
    demo_split: str = "train",
    loader: str | None = None,
    adapter: str | None = None,
    threads: int | None = None,
    demo_pool=None,
    resources: dict | None = None,
    placeholders: dict | None = None,
) -> dict:
    """The ``marginalize`` rule: canonical dataset dir + id list -> distribution + path stats.

    ``settings``: the method's params; ``shard_size`` (default 16: a search per example is
    slow, so small shards lose little work to a kill) is taken out, the rest searches.
    """
    run = open_run(
        data_dir,
        model_cfg,
        adapter=adapter,
        threads=threads,
        resources=resources,
        placeholders=placeholders,
        needs=("marginalization",),
    )
    settings = dict(settings)
    shard_size = int(settings.pop("shard_size", 16))
    return marginalize(
        run.dataset,
        read_id_list(ids_path),
        run.backend,
        run.tokenizer,
        resolved_prompt(prompt_cfg, run.dataset, loader),
        settings,
        dist_path,
        stats_path,
        model_name=model_cfg.get("name", ""),
        demo_split=demo_split,
        shard_size=shard_size,
        identity=run_identity(model_cfg, run.adapter),
        pool_ids=read_pool(demo_pool),
        max_context=model_cfg.get("max_context"),
        too_long=model_cfg.get("too_long_prompts", "fail"),
    )
