"""What each dry-run job processes (prompts, prefill and generated tokens, training steps) and
its estimated GPU-hours: a roofline model over the composed config and the job's wildcards,
with the assumptions of :mod:`multilabel_llm.workflow.cost_assumptions`."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from multilabel_llm.data.prompts import AUTO, AUTO_SLACK
from multilabel_llm.workflow.cost_assumptions import (
    ASSUMPTIONS,
    BREAKDOWN_SHAPE,
    DATASET_STATS,
    DEFAULT_STATS,
    DTYPE_BYTES,
    ENCODER_PARAMS,
    GPU,
    GPUS,
    MODEL_PARAMS,
    SIZE_CLASS_PARAMS,
    Assumptions,
    DatasetStats,
)
from multilabel_llm.workflow.dry_run_jobs import REPO_ROOT, PlannedJob


def _chars(text: str) -> int:
    return len(re.sub(r"\{\w+\}", "", text or ""))


def _size_token(name: str) -> str | None:
    for part in re.split(r"[-_/\s]+", str(name).lower()):
        if re.fullmatch(r"\d+(\.\d+)?[bm]", part):
            return part
    return None


def params_of(name: str) -> float | None:
    """Parameters from the size token of a model name (table, else the number itself)."""
    token = _size_token(name)
    if token is None:
        return None
    if token in MODEL_PARAMS:
        return MODEL_PARAMS[token]
    return float(token[:-1]) * (1e9 if token.endswith("b") else 1e6)


@dataclass
class Work:
    """What one job computes: passes of ``tokens`` tokens, each at least one weight read."""

    prompts: int = 0
    prompt_tokens: float = 0.0  # as written: every prompt in full
    prefill_tokens: float = 0.0  # computed: shared prefixes once (the engine's KV reuse)
    generated_tokens: float = 0.0
    passes: list = field(default_factory=list)  # (count, tokens per pass, kind)
    params: float = 0.0
    weight_bytes: float = 0.0
    note: str = ""


@dataclass
class JobCost:
    prompts: int
    prompt_tokens: float
    prefill_tokens: float
    generated_tokens: float
    gpu_type: str
    gpus: int
    wall_hours: float
    gpu_hours: float
    limit_gpu_hours: float
    over_limit: bool
    note: str = ""
    engine: str = ""  # hf, vllm, or "" (no language model)
    submissions: int = 1  # sbatch calls: 0 for a client run inside its engine service's group
    loads: int = 0  # model loads: 1 for an engine service or a job that loads its own model


class PlanContext:
    """The composed config plus lookups of dataset sizes, prompt shapes and model sizes."""

    def __init__(self, config: dict, workdir: str | Path = REPO_ROOT, assumptions=ASSUMPTIONS):
        self.config = config or {}
        self.workdir = Path(workdir)
        self.a = assumptions
        self.results = self.workdir / str(self.config.get("results_dir", "results"))
        self.warnings: Counter = Counter()
        self._cache: dict = {}

    def _memo(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    # --- datasets ---
    def dataset_cfg(self, slot: str) -> dict:
        return (self.config.get("datasets") or {}).get(slot) or {}

    def stats(self, slot: str) -> DatasetStats:
        return self._memo(("stats", slot), lambda: self._stats(slot))

    def _stats(self, slot: str) -> DatasetStats:
        cfg = self.dataset_cfg(slot)
        base = None
        for key in (cfg.get("name"), cfg.get("loader"), slot):
            if key in DATASET_STATS:
                base = DATASET_STATS[key]
                break
        if base is None:
            self.warnings[f"dataset {slot!r}: no documented sizes, used DEFAULT_STATS"] += 1
            base = DEFAULT_STATS
        splits, text_tokens, source = dict(base.splits), base.text_tokens, base.source
        n_labels = len(cfg["labels"]) if cfg.get("labels") else base.n_labels
        if cfg.get("loader") == "goemotions" and "pooling" in cfg and not cfg["pooling"]:
            n_labels = 27  # unpooled: every emotion but neutral
        gen = cfg.get("generate") or {}
        if gen:  # Boxes' seeded generator: sizes and objects are in the config
            splits = {s: int(gen.get(f"n_{s}", n)) for s, n in splits.items()}
            n_labels = len(gen.get("objects") or []) or n_labels
            source = "the dataset config's generate: block"
        if cfg.get("approx_sizes"):
            splits.update({k: int(v) for k, v in cfg["approx_sizes"].items()})
            source = "approx_sizes in the dataset config"
        text_tokens = float(cfg.get("approx_text_tokens") or text_tokens)
        prepared = self.results / "data" / slot / "examples.parquet"
        if prepared.is_file():  # a prepared dataset beats any constant
            try:
                import pandas as pd

                frame = pd.read_parquet(prepared, columns=["split", "text"])
                splits = {str(k): int(v) for k, v in frame["split"].value_counts().items()}
                text_tokens = float(frame["text"].str.len().mean()) / self.a.chars_per_token
                source = f"measured on {prepared.relative_to(self.workdir)}"
            except Exception as err:  # noqa: BLE001 - a broken file only loses precision
                self.warnings[f"{prepared}: unreadable ({err}); using constants"] += 1
        return DatasetStats(splits, n_labels, text_tokens, source)

    def testset_size(self, slot: str, testset: str) -> int:
        return self._memo(("testset", slot, testset), lambda: self._testset_size(slot, testset))

    def _testset_size(self, slot: str, testset: str) -> int:
        built = self.results / "data" / slot / "testsets" / f"{testset}.txt"
        if built.is_file():  # the id list the DAG already built
            return _count_ids(built)
        stats = self.stats(slot)
        available = sum(stats.splits.values())
        try:
            from multilabel_llm.data.testsets import get_testset_cfg

            cfg = get_testset_cfg(self.dataset_cfg(slot), testset, self.workdir)
        except Exception:  # noqa: BLE001 - unknown slot or test set: the documented default
            cfg = {"kind": "main", "size": 200, "splits": ["test"]}
        in_splits = sum(stats.splits.get(s, 0) for s in cfg.get("splits") or []) or available
        if cfg.get("kind") == "all":
            return int(in_splits)
        if cfg.get("ids_file"):
            path = Path(cfg["ids_file"])
            if path.is_file():
                n = _count_ids(path)
                return min(n, int(cfg["size"])) if cfg.get("size") else n
            self.warnings[f"{slot}/{testset}: {path} missing; assumed size 200"] += 1
            return int(cfg.get("size") or 200)
        return int(min(int(cfg.get("size", 200)), in_splits))

    # --- models ---
    def model_cfg(self, slot: str) -> dict:
        models = self.config.get("models") or {}
        if slot in models:
            return models[slot]
        base = slot.removesuffix("-sft")
        return models.get(base) or {}

    def params(self, slot: str) -> float | None:
        cfg = self.model_cfg(slot)
        for name in (cfg.get("name"), cfg.get("hf_id"), slot):
            if name and params_of(name):
                return params_of(name)
        return SIZE_CLASS_PARAMS.get(str(cfg.get("size_class")))

    def weight_bytes(self, slot: str) -> float:
        dtype = str(self.model_cfg(slot).get("dtype") or "bfloat16")
        return (self.params(slot) or 0.0) * DTYPE_BYTES.get(dtype, 2)

    # --- prompts ---
    def prompt_spec(self, prompt: str | None, dataset_slot: str):
        prompts = self.config.get("prompts") or {}
        cfg = prompts.get(prompt) if prompt else None
        if cfg is None and prompts:
            cfg = next(iter(prompts.values()))  # e.g. SFT keyed by dataset and model only
        if cfg is None:
            return None
        from multilabel_llm.data.prompts import pick_template, resolve_prompt

        dcfg = self.dataset_cfg(dataset_slot)
        template = pick_template(cfg, dcfg.get("loader"), dcfg.get("name"))
        try:
            return resolve_prompt(cfg, dcfg.get("name") or dataset_slot, template)
        except ValueError as err:
            self.warnings[f"prompt {prompt!r}: {err}"] += 1
            return None

    def prompt_shape(self, prompt: str | None, dataset_slot: str) -> dict:
        """Token counts of the instruction, one demo, the query and max_new_tokens."""
        key = ("shape", prompt, dataset_slot)
        return self._memo(key, lambda: self._prompt_shape(prompt, dataset_slot))

    def _prompt_shape(self, prompt, dataset_slot) -> dict:
        a, stats = self.a, self.stats(dataset_slot)
        spec = self.prompt_spec(prompt, dataset_slot)
        if spec is None:
            instruction, example = (
                "Classify the inputs into: {labels}.\n",
                "Input: {text}\n{label}\n",
            )
            n_shots, max_new, fmt = 10, 18, "json"
        else:
            instruction, example = spec.instruction, spec.example
            n_shots, fmt = int(spec.n_shots), spec.label_format
            if spec.max_new_tokens == AUTO:  # sized from the tokenizer at run time: bound it here
                per_label = a.label_tokens + (2 if fmt == "json" else 1)
                max_new = round((6 if fmt == "json" else 2) + stats.n_labels * per_label)
                max_new += AUTO_SLACK
            else:
                max_new = int(spec.max_new_tokens)
        instr = _chars(instruction) / a.chars_per_token + stats.n_labels * a.label_tokens
        before_label = example[: example.index("{label}")] if "{label}" in example else example
        query = stats.text_tokens + _chars(before_label) / a.chars_per_token
        demo = stats.text_tokens + _chars(example) / a.chars_per_token + a.answer(fmt)
        return {
            "instruction": instr,
            "demo": demo,
            "query": query,
            "n_shots": n_shots,
            "max_new_tokens": max_new,
            "answer": a.answer(fmt),
        }

    def breakdown_shots(self, prompt: str | None) -> int:
        prompt_cfg = (self.config.get("prompts") or {}).get(prompt) or {}
        opts = prompt_cfg.get("breakdown") or self.config.get("breakdown") or {}
        return int(opts.get("n_shots", 10))

    def method_params(self, method: str | None) -> dict:
        return dict(((self.config.get("methods") or {}).get(method) or {}).get("params") or {})

    def training(self, key: str) -> dict:
        return dict((self.config.get("training") or {}).get(key) or {})


def _count_ids(path: Path) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip() and not line.strip().startswith("#"))


def _batch(ctx: PlanContext, slot: str, default: int) -> int:
    """The engine's choice (engine/model_spec.py): model, else its GPU size class, else default."""
    cfg = ctx.model_cfg(slot)
    size_class = (
        (ctx.config.get("resources") or {})
        .get("size_classes", {})
        .get(str(cfg.get("size_class")), {})
    )
    if cfg.get("batch_size"):
        return int(cfg["batch_size"])
    if size_class.get("gpu") and size_class.get("batch_size"):
        return int(size_class["batch_size"])
    return default


def _llm_work(ctx: PlanContext, job: PlannedJob) -> Work | None:
    wc = job.wildcards
    slot = wc.get("model", "")
    params = ctx.params(slot)
    if not params:
        ctx.warnings[f"model {slot!r}: unknown size; its jobs count no GPU time"] += 1
        return None
    return Work(params=params, weight_bytes=ctx.weight_bytes(slot))


def work_traces(ctx: PlanContext, job: PlannedJob) -> Work | None:
    """One prompt per test example; the shared few-shot prefix is computed once per job."""
    w = _llm_work(ctx, job)
    if w is None:
        return None
    wc = job.wildcards
    n = ctx.testset_size(wc["dataset"], wc["testset"])
    s = ctx.prompt_shape(wc.get("prompt"), wc["dataset"])
    prefix = s["instruction"] + s["n_shots"] * s["demo"]
    b = min(_batch(ctx, wc["model"], ctx.a.trace_batch_size), max(n, 1))
    batches = math.ceil(n / b)
    w.prompts = n
    w.prompt_tokens = n * (prefix + s["query"])
    w.prefill_tokens = prefix + n * s["query"]
    w.generated_tokens = n * s["max_new_tokens"]  # an upper bound: rows stop early
    w.passes = [(1, prefix), (batches, b * s["query"]), (batches * s["max_new_tokens"], b)]
    return w


def work_attention(ctx: PlanContext, job: PlannedJob) -> Work | None:
    """One eager forward per traced example over its prompt + generated tokens (no cache)."""
    w = _llm_work(ctx, job)
    if w is None:
        return None
    wc = job.wildcards
    n = ctx.testset_size(wc["dataset"], wc["testset"])
    s = ctx.prompt_shape(wc.get("prompt"), wc["dataset"])
    length = s["instruction"] + s["n_shots"] * s["demo"] + s["query"] + s["max_new_tokens"]
    w.prompts = n
    w.prompt_tokens = w.prefill_tokens = n * length
    w.passes = [(n, length)]
    return w


def work_breakdown(kind: str):
    """Unary: one query per example x (label + none); binary: one per unordered pair of them."""

    def work(ctx: PlanContext, job: PlannedJob) -> Work | None:
        w = _llm_work(ctx, job)
        if w is None:
            return None
        wc = job.wildcards
        n = ctx.testset_size(wc["dataset"], wc["testset"])
        options = ctx.stats(wc["dataset"]).n_labels + 1  # the none label is scored too
        per_example = options if kind == "unary" else math.comb(options, 2)
        header, block = BREAKDOWN_SHAPE[kind]
        text = ctx.stats(wc["dataset"]).text_tokens
        prefix = header + ctx.breakdown_shots(wc.get("prompt")) * (text + block)
        query = text + block
        q = n * per_example
        b = min(_batch(ctx, wc["model"], ctx.a.breakdown_batch_size), max(q, 1))
        w.prompts = q
        w.prompt_tokens = q * (prefix + query)
        w.prefill_tokens = prefix + q * query
        w.passes = [(1, prefix), (math.ceil(q / b), b * query)]
        return w

    return work


def work_marginalize(ctx: PlanContext, job: PlannedJob) -> Work | None:
    """Per example: its whole prompt once, then up to the search budget of 1-token passes."""
    w = _llm_work(ctx, job)
    if w is None:
        return None
    wc = job.wildcards
    n = ctx.testset_size(wc["dataset"], wc["testset"])
    s = ctx.prompt_shape(wc.get("prompt"), wc["dataset"])
    p = ctx.method_params(wc.get("method"))
    budget = p.get("max_expansions") or int(p.get("max_paths", 32)) * int(
        p.get("max_new_tokens", 20)
    )
    prompt = s["instruction"] + s["n_shots"] * s["demo"] + s["query"]
    w.prompts = n
    w.prompt_tokens = w.prefill_tokens = n * prompt
    w.generated_tokens = n * int(budget)  # the budget is an upper bound
    w.passes = [(n, prompt), (n * int(budget), 1)]
    return w


def work_sft(ctx: PlanContext, job: PlannedJob) -> Work | None:
    """LoRA on the train split, zero-shot prompts: epochs x train tokens, plus dev losses."""
    w = _llm_work(ctx, job)
    if w is None:
        return None
    wc = job.wildcards
    cfg = ctx.training("sft")
    stats = ctx.stats(wc["dataset"])
    s = ctx.prompt_shape(wc.get("prompt"), wc["dataset"])
    seq = min(float(cfg.get("max_seq_length", 256)), s["instruction"] + s["query"] + s["answer"])
    n_train = stats.splits.get("train", 0)
    if cfg.get("max_train_examples"):
        n_train = min(n_train, int(cfg["max_train_examples"]))
    n_dev = stats.splits.get("dev", 0)
    if cfg.get("max_dev_examples"):
        n_dev = min(n_dev, int(cfg["max_dev_examples"]))
    bs, accum = int(cfg.get("batch_size", 8)), int(cfg.get("grad_accum", 1))
    epochs, every = int(cfg.get("epochs", 1)), int(cfg.get("eval_every") or 0)
    micro = math.ceil(n_train / bs)
    steps = math.ceil(micro / accum) * epochs
    evals = (steps // every if every else 0) + epochs  # every eval_every steps + epoch ends
    w.prompts = n_train * epochs + n_dev * evals
    w.prompt_tokens = w.prefill_tokens = w.prompts * seq
    w.passes = [(micro * epochs, bs * seq, "train"), (evals * math.ceil(n_dev / bs), bs * seq)]
    w.note = "upper bound: early stopping (patience) can end it sooner"
    return w


def work_demux(ctx: PlanContext, job: PlannedJob) -> Work | None:
    """Encoder fine-tuning over (label names, text): epochs x train, dev every epoch."""
    cfg = ctx.training("demux")
    enc = cfg.get("encoder") or {}
    name = str(enc.get("hf_id") or enc.get("package") or "minilm").lower().replace("_", "-")
    params = next((v for k, v in ENCODER_PARAMS.items() if k in name), None)
    if params is None:
        ctx.warnings[f"demux encoder {name!r}: unknown size, assumed bert-base"] += 1
        params = ENCODER_PARAMS["bert-base"]
    stats = ctx.stats(job.wildcards["dataset"])
    seq = min(
        float(cfg.get("max_length", 128)),
        stats.text_tokens + stats.n_labels * ctx.a.label_tokens + 3,
    )
    n_train = stats.splits.get("train", 0)
    if cfg.get("max_train_examples"):
        n_train = min(n_train, int(cfg["max_train_examples"]))
    n_dev = stats.splits.get("dev", 0)
    if cfg.get("max_dev_examples"):
        n_dev = min(n_dev, int(cfg["max_dev_examples"]))
    bs, epochs = int(cfg.get("batch_size", 32)), int(cfg.get("epochs", 1))
    w = Work(params=params, weight_bytes=params * 4)
    w.prompts = (n_train + n_dev) * epochs
    w.prompt_tokens = w.prefill_tokens = w.prompts * seq
    w.passes = [
        (epochs * math.ceil(n_train / bs), bs * seq, "train"),
        (epochs * math.ceil(n_dev / bs), bs * seq),
    ]
    w.note = "upper bound: early stopping (patience) can end it sooner"
    return w


def work_none(ctx: PlanContext, job: PlannedJob) -> Work | None:
    """No LLM work (e.g. linear probes on stored hidden states)."""
    return Work()


def work_score_breakdown(ctx: PlanContext, job: PlannedJob) -> Work | None:
    """Rule score_breakdown: its {kind} wildcard (binary_reversed asks the same pairs)."""
    kind = "unary" if job.wildcards.get("kind") == "unary" else "binary"
    return work_breakdown(kind)(ctx, job)


def work_engine_service(ctx: PlanContext, job: PlannedJob) -> Work | None:
    """An engine service loads its model once; its clients' work is counted on them."""
    return _llm_work(ctx, job)


WORK = {
    "engine_service": work_engine_service,
    "extract_traces": work_traces,
    "extract_traces_hidden": work_traces,
    "extract_attention": work_attention,
    "score_breakdown": work_score_breakdown,
    "marginalize": work_marginalize,
    "train_sft": work_sft,
    "train_demux": work_demux,
    "train_probes": work_none,
}


def gpu_type(job: PlannedJob, partitions, chosen: str, a: Assumptions = ASSUMPTIONS) -> str:
    """The job's gpu_model, else its partition's first GPU model, else the default (a key of GPUS)."""
    names = [str(job.resources.get("gpu_model") or "")]
    for p in partitions or []:
        if p.name == chosen:
            names += list(getattr(p.limits, "available_gpu_models", None) or [])
    for raw in names:
        key = raw.lower()
        for known in GPUS:
            if key.startswith(known):  # "a100_80g" -> a100
                return known
    return a.default_gpu


def seconds(w: Work, gpu: GPU, a: Assumptions = ASSUMPTIONS) -> float:
    """Roofline time on one GPU: each pass is compute-bound or reads every weight once."""
    peak, bandwidth = gpu.bf16_tflops * 1e12, gpu.hbm_gb_s * 1e9 * a.hbm_efficiency
    read = w.weight_bytes / bandwidth if w.weight_bytes else 0.0
    total = w.weight_bytes / (a.load_gb_per_s * 1e9) if w.weight_bytes else 0.0
    for count, tokens, *kind in w.passes:
        if kind and kind[0] == "train":
            compute = a.train_factor * 2 * w.params * tokens / (peak * a.train_mfu)
        else:
            compute = 2 * w.params * tokens / (peak * a.mfu)
        total += count * max(compute, read)
    return total


# wildcards each cost model reads; a job without them gets no estimate (and a warning)
NEEDS = {
    "engine_service": ("dataset", "model"),
    "train_sft": ("dataset", "model"),
    "train_demux": ("dataset",),
    "train_probes": (),
}


# rules whose jobs are clients of an engine service when `engine_service: true` (rules/*.smk)
SERVED_RULES = ("extract_traces", "extract_traces_hidden", "score_breakdown", "marginalize")


def job_engine(ctx: PlanContext, job: PlannedJob) -> str:
    """The engine a job runs on ("" for jobs without a language model): the same decision
    the job itself makes (engine/jobs.py)."""
    from multilabel_llm.engine.backend import RULE_NEEDS, rule_engine

    if job.rule not in RULE_NEEDS or "model" not in job.wildcards:
        return ""
    prompt = (ctx.config.get("prompts") or {}).get(job.wildcards.get("prompt", ""), {})
    return rule_engine(job.rule, ctx.model_cfg(job.wildcards["model"]), prompt)


def service_key(ctx: PlanContext, job: PlannedJob) -> tuple | None:
    """(dataset, model, engine) of the engine service a job runs in, or of the service."""
    wc = job.wildcards
    if job.rule == "engine_service":
        return (wc.get("dataset"), wc.get("model"), wc.get("engine"))
    if ctx.config.get("engine_service", True) and job.rule in SERVED_RULES and "model" in wc:
        return (wc.get("dataset"), wc["model"], job_engine(ctx, job))
    return None


def job_cost(
    ctx: PlanContext,
    job: PlannedJob,
    partitions=None,
    partition: str = "",
    service: PlannedJob | None = None,
) -> JobCost:
    """A job's estimated cost. ``service``: the engine service whose group the job runs in:
    its GPUs do the work, its model load is counted once on the service."""
    res = job.resources if service is None else service.resources
    gpus = int(res.get("gpu") or 0)
    fn = WORK.get(job.rule)
    missing = [
        k for k in NEEDS.get(job.rule, ("dataset", "model", "testset")) if k not in job.wildcards
    ]
    w = Work()
    if fn is None:
        if gpus:
            ctx.warnings[f"rule {job.rule!r} asks for GPUs but has no cost model"] += 1
    elif missing:
        ctx.warnings[f"rule {job.rule!r}: no wildcards {missing}, no estimate"] += 1
    else:
        w = fn(ctx, job) or Work()
    kind = gpu_type(service or job, partitions, partition, ctx.a)
    engine = (
        job.wildcards.get("engine", "") if job.rule == "engine_service" else job_engine(ctx, job)
    )
    wall = seconds(w, GPUS[kind], ctx.a) / 3600 if gpus else 0.0
    load = w.weight_bytes / (ctx.a.load_gb_per_s * 1e9) / 3600
    if engine == "vllm" and gpus:
        wall = (wall - load) / (gpus * ctx.a.vllm_tp_efficiency) + load
        wall += ctx.a.vllm_startup_s / 3600
    if service is not None:  # the service loaded the model (and started vLLM) once
        wall = max(0.0, wall - load - (ctx.a.vllm_startup_s / 3600 if engine == "vllm" else 0))
    runtime = job.resources.get("runtime") if service is None else None
    limit = float(runtime) / 60 if isinstance(runtime, int) else 0.0
    return JobCost(
        prompts=int(w.prompts),
        prompt_tokens=w.prompt_tokens,
        prefill_tokens=w.prefill_tokens,
        generated_tokens=w.generated_tokens,
        gpu_type=kind if gpus else "",
        gpus=gpus,
        wall_hours=wall,
        gpu_hours=wall * gpus,
        limit_gpu_hours=limit * gpus,
        over_limit=bool(gpus and limit and wall > limit),
        note=w.note,
        engine=engine,
        submissions=0 if service is not None else 1,
        loads=int(bool(engine) and service is None),
    )
