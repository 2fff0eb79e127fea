"""One interface for the inference engines: what the drivers ask of a backend, and which one.

A backend holds one loaded model and answers the model-bound questions of the drivers
(engine/run.py, breakdown.py, jobs.py, the CLI and the Python API):

* ``tracer(...)``: greedy decoding with the label forms' scores at every step (traces);
* ``next_token_scores(prefix_ids, prompts, token_ids, ...)``: the next token's scores of a few
  token ids after each prompt (unary and binary breakdown scoring);
* ``shard_components()``: what, besides the run's plan, decides its outputs (the resumable
  shards' key): the loaded weights' probe and dtype for Hugging Face, the checkpoint, engine
  settings and vLLM version for vLLM;
* ``context_length()``: the model's context in tokens (None when unknown);
* ``capabilities``: what it can do beyond that (hidden states, attention weights, the
  lookahead scoring, marginalisation, training); a backend with ``attention`` answers
  ``label_step_attention(prompts, traces)``, one with ``marginalization`` answers
  ``marginals(prompts, labels, parse, settings, ...)``.

Backends are named in :data:`BACKENDS` as ``"module:Class"`` and imported only when used, so
choosing one costs nothing at DAG parse time and vLLM need not be importable here (its engine
runs in its own Python: engine/vllm/backend.py). This module imports no torch; the drivers
reach a backend's module only through :func:`backend_class`, so a new backend is one module
plus one entry in :data:`BACKENDS` (and :data:`DECLARED`).

Which engine runs a job is decided by :func:`engine_for` from the model config and what the job
needs, so the DAG, the cost plan and the job itself agree: a vLLM model's hidden-state, attention
and marginalisation jobs, and its traces under ``label_scoring: lookahead``, run on Hugging Face.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

# engine name -> "module:Class" (imported lazily)
BACKENDS = {
    "hf": "multilabel_llm.engine.hf.backend:HFBackend",
    "vllm": "multilabel_llm.engine.vllm.backend:VLLMBackend",
}
# engines a model config may name (`backend:`): every registered one
CONFIG_ENGINES = tuple(BACKENDS)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond traces and next-token scores."""

    hidden_states: bool = False  # last-layer states per step (probes)
    attention: bool = False  # attention weights (Table 6)
    lookahead: bool = False  # label_scoring: lookahead (two-step label paths)
    marginalization: bool = False  # the token-level search (batched forwards over a cache)
    training: bool = False  # LoRA SFT


class Tracer(Protocol):
    logit_kind: str  # "logit" (raw) or "logprob" (log-softmax): distributions agree either way
    prefix: object | None

    def set_prefix(self, prefix_ids: list[int]) -> None: ...

    def run(self, prompts: list[list[int]], progress=None) -> list: ...


class Backend(Protocol):
    name: str
    capabilities: Capabilities
    tokenizer: object

    def tracer(
        self,
        label_tokens,
        stop_rule,
        max_new_tokens: int,
        batch_size: int,
        *,
        hidden_states: bool = False,
        label_scoring: str = "first_token",
    ) -> Tracer: ...

    def next_token_scores(
        self,
        prefix_ids: list[int],
        prompts: list[list[int]],
        token_ids: list[int],
        *,
        batch_size: int = 32,
        desc: str = "",
    ): ...

    def shard_components(self) -> dict: ...

    def context_length(self) -> int | None: ...

    def close(self) -> None: ...


def backend_class(name: str):
    """The backend class registered as ``name`` (imported now)."""
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r}: expected one of {sorted(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def as_backend(model_or_backend, tokenizer=None):
    """A backend as is; a bare transformers model wrapped in the Hugging Face backend."""
    if hasattr(model_or_backend, "tracer") and hasattr(model_or_backend, "shard_components"):
        return model_or_backend
    if tokenizer is None:
        raise ValueError("a bare model needs its tokenizer to become a backend")
    return backend_class("hf")(model_or_backend, tokenizer)


# what a job needs of its engine -> the Capabilities field that provides it
NEEDS = ("hidden_states", "attention", "lookahead", "marginalization", "training")
# the capabilities of each configurable engine, known without importing it (DAG, cost plan)
DECLARED = {
    "hf": Capabilities(True, True, True, True, True),
    "vllm": Capabilities(),
}


def configured_engine(model_cfg: dict) -> str:
    """The engine a model config asks for (``backend:``, default ``hf``), checked."""
    engine = model_cfg.get("backend") or "hf"
    if engine not in CONFIG_ENGINES:
        slot = model_cfg.get("slot")
        where = f"models.{slot}.backend" if slot else "backend"
        raise ValueError(
            f"config key {where!r}: {engine!r} is not allowed; allowed values: "
            f"{list(CONFIG_ENGINES)}"
        )
    return engine


def engine_for(model_cfg: dict, *needs: str) -> str:
    """The engine that runs a job of this model needing ``needs`` (names from :data:`NEEDS`):
    the configured one when it can, else Hugging Face (which can do everything)."""
    engine = configured_engine(model_cfg)
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"unknown engine needs {unknown}; expected names from {list(NEEDS)}")
    caps = DECLARED[engine]
    return engine if all(getattr(caps, n) for n in needs) else "hf"


# model-bound rules -> what their jobs need of an engine (the DAG, the cost plan and the jobs)
RULE_NEEDS = {
    "extract_traces": (),
    "extract_traces_hidden": ("hidden_states",),
    "extract_attention": ("attention",),
    "score_breakdown": (),
    "marginalize": ("marginalization",),
    "train_sft": ("training",),
}


def rule_engine(rule: str, model_cfg: dict, prompt_cfg: dict | None = None) -> str:
    """The engine a job of ``rule`` runs on, for this model and prompt (engine/jobs.py makes
    the same choice when it opens the run)."""
    needs = RULE_NEEDS[rule]
    if ((prompt_cfg or {}).get("label_scoring") or "first_token") != "first_token":
        needs = (*needs, "lookahead")
    return engine_for(model_cfg, *needs)


def engine_key_problems(slot: str, model_cfg: dict, size_class: dict) -> list[str]:
    """Engine keys that contradict each other or the size class (config-time checks)."""
    engine = model_cfg.get("backend") or "hf"
    opts = model_cfg.get("vllm") or {}
    gpus = int(size_class.get("gpu") or 0)
    problems = []
    if opts and engine != "vllm":
        problems.append(
            f"config key 'models.{slot}.vllm': settings of the vllm engine, but "
            f"models.{slot}.backend is {engine!r}; set backend: vllm or vllm: null"
        )
    if engine == "vllm" and model_cfg.get("quantization"):
        problems.append(
            f"config key 'models.{slot}.quantization': {model_cfg['quantization']} is "
            f"bitsandbytes loading on the hf engine; with backend: vllm set "
            f"models.{slot}.vllm.quantization (fp8 on GPU, int8_per_channel_weight_only on CPU)"
        )
    vquant = opts.get("quantization")
    if engine == "vllm" and vquant == "fp8" and not gpus:
        problems.append(
            f"config key 'models.{slot}.vllm.quantization': fp8 runs on GPUs only, but size "
            f"class {model_cfg.get('size_class')!r} has gpu: 0; use int8_per_channel_weight_only "
            "or null on CPU"
        )
    tp = opts.get("tensor_parallel_size")
    if engine == "vllm" and tp and gpus and int(tp) > gpus:
        problems.append(
            f"config key 'models.{slot}.vllm.tensor_parallel_size': {tp} GPUs, but size class "
            f"{model_cfg.get('size_class')!r} gives a job {gpus}"
        )
    return problems
