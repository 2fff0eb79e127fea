"""Cost plan of a dry run: partition, prompts, tokens and estimated GPU-hours of every job.

A dry run (``snakemake -n``) prints each job's resources but not its partition: the
partition is chosen at submission by snakemake-executor-plugin-slurm from
``--slurm-partition-config`` (profiles/slurm/partitions.yaml). This module reads the dry-run
text, rebuilds each job's resources, and scores the partitions with the plugin's
``Partition.score_job_fit`` so the listing is exactly what submission would do::

    snakemake -n --profile profiles/slurm --config experiment=paper \\
        | python -m multilabel_llm.workflow.cluster_plan > plan.tsv      # cost plan on stderr
    python -m multilabel_llm.workflow.cluster_plan --experiment paper --tsv cost.tsv --json cost.json

On top of the partition it estimates, per rule and partition, the prompts, the prefill and
generated tokens and the GPU-hours, from each job's wildcards (dataset, model, prompt, testset,
method) and the composed config. Every number is an ESTIMATE from the assumptions below (a
roofline model: compute-bound prefill, bandwidth-bound decoding); docs/cluster_plan.md states
them with a worked example. The grid is never assumed: only the jobs the dry run lists count.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from multilabel_llm.data.prompts import AUTO, AUTO_SLACK
from multilabel_llm.engine.model_spec import DEFAULT_BATCH_SIZE

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PARTITIONS = REPO_ROOT / "profiles" / "slurm" / "partitions.yaml"
DEFAULT_PROFILE = REPO_ROOT / "profiles" / "slurm"
COLUMNS = (
    "rule",
    "wildcards",
    "threads",
    "mem_mb",
    "runtime",
    "gpu",
    "gpu_model",
    "partition",
    "engine",
)

# ============================== assumptions (all in one place) ==============================


@dataclass(frozen=True)
class GPU:
    """Dense bf16 tensor-core peak and HBM bandwidth (vendor datasheets, no sparsity)."""

    bf16_tflops: float
    hbm_gb_s: float
    source: str


GPUS: dict[str, GPU] = {
    "a100": GPU(312.0, 2039.0, "NVIDIA A100 80GB SXM datasheet"),
    "a40": GPU(149.7, 696.0, "NVIDIA A40 datasheet (299.4 TFLOP/s is with sparsity)"),
    "h100": GPU(989.0, 3350.0, "NVIDIA H100 SXM datasheet"),
    "h200": GPU(989.0, 4800.0, "NVIDIA H200 SXM datasheet"),
    "l40s": GPU(362.0, 864.0, "NVIDIA L40S datasheet"),
}


@dataclass(frozen=True)
class Assumptions:
    """The knobs of the estimate; docs/cluster_plan.md explains each one."""

    mfu: float = 0.40  # share of bf16 peak a forward pass over many tokens reaches (HF, SDPA)
    train_mfu: float = 0.30  # the same for LoRA / encoder training steps
    hbm_efficiency: float = 0.70  # share of HBM bandwidth a weight-streaming decode step reaches
    load_gb_per_s: float = 2.0  # weights read from disk per job (GPUs are held meanwhile)
    train_factor: float = 3.0  # FLOPs of a training token / forward FLOPs (see docs)
    chars_per_token: float = 4.0  # English text and templates
    label_tokens: float = 2.0  # one label name in a list ("joy, ")
    # a demo's label answer; with label_tokens, calibrated on the bundled tokenizer (docs)
    answer_tokens: tuple = (("json", 12.0), ("comma", 4.0))
    trace_batch_size: int = DEFAULT_BATCH_SIZE  # engine default (engine/model_spec.py) on CPU
    breakdown_batch_size: int = DEFAULT_BATCH_SIZE
    default_gpu: str = "a100"  # when neither the job nor its partition names a known GPU
    # vLLM: start-up (memory profiling, CUDA graph capture) on top of reading the weights, and
    # the share of linear speed-up tensor parallelism keeps (all-reduce per layer). Our engine
    # places a model over several GPUs with a device map, where one GPU works at a time.
    vllm_startup_s: float = 120.0
    vllm_tp_efficiency: float = 0.8

    def answer(self, label_format: str) -> float:
        return dict(self.answer_tokens).get(label_format, 12.0)


ASSUMPTIONS = Assumptions()

# Parameters by the size token in a model's name ("llama-3.1-70b" -> 70b); model cards.
MODEL_PARAMS: dict[str, float] = {
    "135m": 0.135e9,  # SmolLM2-135M
    "1b": 1.24e9,  # Llama-3.2-1B
    "7b": 7.62e9,  # Qwen2.5-7B (Mistral/zephyr-7B: 7.24e9)
    "8b": 8.03e9,  # Llama-3.1-8B
    "70b": 70.6e9,  # Llama-3.1/3.3-70B (Llama-2-70B: 69.0e9)
    "72b": 72.7e9,  # Qwen2.5-72B
}
# When the name has no size token: the resources size class (config/resources).
SIZE_CLASS_PARAMS: dict[str, float] = {
    "tiny": 0.135e9,
    "b1": 1.24e9,
    "b8": 8.03e9,
    "b70": 70.6e9,
}
# Demux encoders (training.demux.encoder package / hf_id); model cards.
ENCODER_PARAMS: dict[str, float] = {
    "minilm": 22.7e6,  # all-MiniLM-L6-v2 (the offline default)
    "bert-base": 110e6,
    "roberta-base": 125e6,
    "bert-large": 340e6,
    "roberta-large": 355e6,
}
DTYPE_BYTES = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "float32": 4, "fp32": 4}


@dataclass(frozen=True)
class DatasetStats:
    """Examples per split, label count, mean text length in tokens, and where they come from."""

    splits: dict
    n_labels: int
    text_tokens: float
    source: str


# Keyed by the dataset config's `name`, then its `loader`. Used only where neither the prepared
# dataset (results/data/<slot>/examples.parquet) nor `approx_sizes` in the dataset config exist.
# Text tokens: measured with the bundled SmolLM2 tokenizer on data/ excerpts where we have data,
# else words x 1.3 from the dataset papers (Llama 3's larger vocabulary gives ~10% fewer).
DATASET_STATS: dict[str, DatasetStats] = {
    "goemotions": DatasetStats(
        {"train": 43410, "dev": 5426, "test": 5427},
        7,
        17.0,
        "Demszky et al. 2020 released splits; 7 clusters (paper §A.2); tokens measured on data/goemotions",
    ),
    "mfrc": DatasetStats(
        {"train": 12898, "dev": 1612, "test": 1613},
        6,
        60.0,
        "Trager et al. 2022: 16,123 comments, 80/10/10 assumed for the reference splits.yaml; "
        "6 foundations (paper §A.2); ~45 words per comment",
    ),
    "semeval": DatasetStats(
        {"train": 6838, "dev": 886, "test": 3259},
        11,
        26.0,
        "Mohammad et al. 2018 (SemEval 2018 E-c English); 11 emotions; ~20 words per tweet",
    ),
    "hatexplain": DatasetStats(
        {"train": 15383, "dev": 1922, "test": 1924},
        3,
        29.0,
        "Mathew et al. 2021 post_id_divisions; 3 classes (paper §A.3); tokens measured on data/hatexplain",
    ),
    "msp_podcast": DatasetStats(
        {"train": 84030, "dev": 19815, "test": 30647},
        8,
        20.0,
        "MSP-Podcast v1.11 Train/Development/Test1 (approximate); 8 primary emotions once "
        "'Other' is dropped (paper §A.3); ~15 words per utterance",
    ),
    "boxes": DatasetStats(
        {"train": 500, "dev": 100, "test": 500},
        16,
        67.0,
        "the seeded generator's defaults (config/dataset/boxes.yaml generate:); 16 objects; "
        "tokens measured on the generated examples",
    ),
    "goemotions_demo": DatasetStats(
        {"train": 300, "dev": 100, "test": 50}, 7, 17.0, "data/README.md excerpt"
    ),
    "hatexplain_demo": DatasetStats(
        {"train": 150, "dev": 40, "test": 60}, 3, 29.0, "data/README.md excerpt"
    ),
    "generic": DatasetStats({"train": 4, "test": 4}, 4, 10.0, "data/generic/example.csv"),
}
DEFAULT_STATS = DatasetStats({"train": 1000, "dev": 200, "test": 200}, 8, 30.0, "unknown dataset")

# Breakdown prompts (engine/breakdown.py): header tokens and per-block template tokens.
BREAKDOWN_SHAPE = {"unary": (40.0, 16.0), "binary": (45.0, 14.0)}

# ============================== dry-run parsing and partitions ==============================


class _Resources(dict):
    """dict with attribute access, the shape the plugin expects from ``job.resources``."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(key) from err


@dataclass
class PlannedJob:
    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    resources: _Resources = field(default_factory=_Resources)
    threads: int = 1
    local: bool = False

    # the attributes the plugin's scoring reads
    @property
    def name(self) -> str:
        return self.rule

    def is_group(self) -> bool:
        return False


def _value(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def parse_dry_run(text: str) -> list[PlannedJob]:
    """Jobs of a ``snakemake -n`` listing: rule (local or not), wildcards, resources, threads."""
    jobs: list[PlannedJob] = []
    for line in text.splitlines():
        head = re.match(r"^(localrule|rule) (\w+):$", line.strip())
        if head:
            jobs.append(PlannedJob(head.group(2), local=head.group(1) == "localrule"))
            continue
        if not jobs or not line.startswith("    "):
            continue
        key, _, rest = line.strip().partition(": ")
        if key == "wildcards":
            jobs[-1].wildcards = dict(kv.split("=", 1) for kv in rest.split(", "))
        elif key == "resources":
            for kv in rest.split(", "):
                name, _, val = kv.partition("=")
                jobs[-1].resources[name] = _value(val)
        elif key == "threads":
            jobs[-1].threads = int(rest)
    return jobs


def choose_partition(job: PlannedJob, partitions) -> str:
    """The plugin's choice: an explicit slurm_partition, else the best-scoring partition."""
    if job.resources.get("slurm_partition"):
        return str(job.resources["slurm_partition"])
    scored = [(p.score_job_fit(job), p.name) for p in partitions]
    scored = [(s, n) for s, n in scored if s is not None]
    if not scored:
        return "NONE (no partition fits; the plugin falls back to the cluster default)"
    return max(scored)[1]


def _read_partitions(partitions_file):
    from snakemake_executor_plugin_slurm.partitions import read_partition_file

    return read_partition_file(Path(partitions_file))


def _row(job: PlannedJob, partition: str) -> dict:
    res = job.resources
    return {
        "rule": job.rule,
        "wildcards": ",".join(f"{k}={v}" for k, v in job.wildcards.items()),
        "threads": job.threads,
        "mem_mb": res.get("mem_mb", ""),
        "runtime": res.get("runtime", ""),
        "gpu": res.get("gpu", 0),
        "gpu_model": res.get("gpu_model", ""),
        "partition": partition,
    }


def local_rules(workdir: str | Path = REPO_ROOT) -> set[str]:
    """Rules declared local in the workflow (``localrules:`` blocks, ``localrule: True``).

    Snakemake 9's dry run prints them as plain ``rule`` lines, so the listing alone would
    send tables and figures to the cpu partition.
    """
    root = Path(workdir)
    names: set[str] = set()
    for path in [root / "Snakefile", *sorted((root / "rules").rglob("*.smk"))]:
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        rule = None
        for k, line in enumerate(lines):
            head = re.match(r"^(?:rule|checkpoint)\s+(\w+)", line)
            if head:
                rule = head.group(1)
            elif re.match(r"^\s+localrule:\s*True", line) and rule:
                names.add(rule)
            elif re.match(r"^localrules:", line):
                block = [line.split(":", 1)[1], *_indented(lines[k + 1 :])]
                names.update(n for n in re.split(r"[\s,]+", " ".join(block)) if n)
    return names


def _indented(lines: list[str]):
    """The continuation lines of a block (comments dropped), up to the next top-level line."""
    for line in lines:
        if line.strip() and not line[0].isspace():
            return
        yield line.split("#", 1)[0]


def plan(
    text: str,
    partitions_file: str | Path = DEFAULT_PARTITIONS,
    workdir: str | Path = REPO_ROOT,
) -> list[dict]:
    """One row per cluster job (local rules run on the submit host and are left out)."""
    partitions = _read_partitions(partitions_file)
    local = local_rules(workdir)
    return [
        _row(job, choose_partition(job, partitions))
        for job in parse_dry_run(text)
        if not (job.local or job.rule in local)
    ]


# ============================== what each job processes ==============================


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


# ============================== the plan ==============================

SUM_FIELDS = (
    "jobs",
    "submissions",
    "loads",
    "prompts",
    "prompt_tokens",
    "prefill_tokens",
    "generated_tokens",
    "gpu_hours",
    "limit_gpu_hours",
    "over_limit",
)


@dataclass
class CostPlan:
    experiment: str
    jobs: list  # (row dict, JobCost)
    groups: dict  # (partition, rule) -> sums
    partitions: dict  # partition -> sums
    total: dict
    warnings: dict
    assumptions: dict
    engines: dict = field(default_factory=dict)  # engine -> sums (model-bound jobs)


def _add(into: dict, cost: JobCost) -> None:
    into["jobs"] = into.get("jobs", 0) + 1
    for name in SUM_FIELDS[1:]:
        into[name] = into.get(name, 0) + getattr(cost, name)


def cost_plan(
    text: str,
    config: dict,
    partitions_file: str | Path = DEFAULT_PARTITIONS,
    workdir: str | Path = REPO_ROOT,
    assumptions: Assumptions = ASSUMPTIONS,
    experiment: str = "",
    by: str | None = None,
) -> CostPlan:
    """Every cluster job with its partition and cost, summed per (partition, rule[, by])."""
    partitions = _read_partitions(partitions_file)
    local = local_rules(workdir)
    ctx = PlanContext(config, workdir, assumptions)
    jobs, groups, per_partition, total, engines = [], {}, {}, {}, {}
    planned = [j for j in parse_dry_run(text) if not (j.local or j.rule in local)]
    keys = {id(job): service_key(ctx, job) for job in planned}
    services = {keys[id(j)]: j for j in planned if j.rule == "engine_service"}
    # a service's group runs its clients one after another: their hours count on its limit
    group_hours: Counter = Counter()
    for job in planned:
        service = services.get(keys[id(job)]) if job.rule in SERVED_RULES else None
        partition = choose_partition(service or job, partitions)
        cost = job_cost(ctx, job, partitions, partition, service)
        if service is not None:
            group_hours[keys[id(job)]] += cost.wall_hours
        jobs.append((job, {**_row(job, partition), "engine": cost.engine}, cost))
    for job, _, cost in jobs:
        if job.rule == "engine_service" and cost.gpus and cost.limit_gpu_hours:
            wall = cost.wall_hours + group_hours[keys[id(job)]]
            cost.over_limit = wall > cost.limit_gpu_hours / cost.gpus
    for job, row, cost in jobs:
        if cost.engine:
            _add(engines.setdefault(cost.engine, {}), cost)
        rule = f"{job.rule} {by}={job.wildcards.get(by, '-')}" if by else job.rule
        _add(groups.setdefault((row["partition"], rule), {}), cost)
        _add(per_partition.setdefault(row["partition"], {}), cost)
        _add(total, cost)
    jobs = [(row, cost) for _, row, cost in jobs]
    return CostPlan(
        experiment=experiment,
        jobs=jobs,
        groups=dict(sorted(groups.items())),
        partitions=dict(sorted(per_partition.items())),
        total=total,
        warnings=dict(ctx.warnings),
        assumptions={**asdict(assumptions), "gpus": {k: asdict(v) for k, v in GPUS.items()}},
        engines=dict(sorted(engines.items())),
    )


# ============================== output ==============================


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def summary_rows(cp: CostPlan) -> list[dict]:
    """Per (partition, rule) rows, each partition's TOTAL row after them, then ALL / TOTAL."""
    out = []
    for partition, sums in cp.partitions.items():
        for (p, rule), g in cp.groups.items():
            if p == partition:
                out.append({"partition": p, "rule": rule, **g})
        out.append({"partition": partition, "rule": "TOTAL", **sums})
    out.append({"partition": "ALL", "rule": "TOTAL", **cp.total})
    return out


def format_table(cp: CostPlan) -> str:
    """The plan as a fixed-width table (what ``main`` prints on stderr)."""
    rows = summary_rows(cp)
    width = max([len("rule"), *(len(r["rule"]) for r in rows)])
    fmt = (
        f"{{:<10}} {{:<{width}}} {{:>7}} {{:>7}} {{:>6}} {{:>9}} {{:>11}} {{:>13}} {{:>10}} "
        "{:>11} {:>10}"
    )
    lines = [
        f"{cp.total.get('jobs', 0)} cluster jobs in {cp.total.get('submissions', 0)} "
        f"submissions, {cp.total.get('loads', 0)} model loads"
        + (f" of experiment={cp.experiment}" if cp.experiment else "")
        + ": ESTIMATED cost (assumptions: docs/cluster_plan.md)",
        fmt.format(
            "partition",
            "rule",
            "jobs",
            "sbatch",
            "loads",
            "prompts",
            "prefill tok",
            "generated tok",
            "GPU-h",
            "GPU-h limit",
            "over limit",
        ),
    ]
    for r in rows:
        lines.append(
            fmt.format(
                r["partition"][:10],
                r["rule"],
                r["jobs"],
                r["submissions"],
                r["loads"],
                _si(r["prompts"]),
                _si(r["prefill_tokens"]),
                _si(r["generated_tokens"]),
                f"{r['gpu_hours']:,.1f}",
                f"{r['limit_gpu_hours']:,.0f}",
                r["over_limit"],
            )
        )
    for engine, sums in cp.engines.items():
        lines.append(
            f"engine {engine}: {sums['jobs']} model-bound jobs, {sums['loads']} model loads, "
            f"{sums['gpu_hours']:,.1f} GPU-h (limit {sums['limit_gpu_hours']:,.0f})"
        )
    for message, n in cp.warnings.items():
        lines.append(f"warning ({n} jobs): {message}")
    return "\n".join(lines)


TSV_FIELDS = ("partition", "rule") + SUM_FIELDS


def write_tsv(cp: CostPlan, path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(TSV_FIELDS) + "\n")
        for r in summary_rows(cp):
            vals = [r[k] if isinstance(r[k], str | int) else f"{r[k]:.6g}" for k in TSV_FIELDS]
            handle.write("\t".join(str(v) for v in vals) + "\n")


def write_json(cp: CostPlan, path, with_jobs: bool = False) -> None:
    doc = {
        "experiment": cp.experiment,
        "note": "estimates from a roofline model; see docs/cluster_plan.md",
        "summary": summary_rows(cp),
        "engines": cp.engines,
        "warnings": cp.warnings,
        "assumptions": cp.assumptions,
    }
    if with_jobs:
        doc["jobs"] = [{**row, **asdict(cost)} for row, cost in cp.jobs]
    Path(path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


# ============================== command line ==============================


def config_items_from_dry_run(text: str) -> dict | None:
    """The ``--config`` items of the dry run's own command line (Snakemake prints it)."""
    line = next((s for s in text.splitlines() if s.strip().startswith("Command:")), None)
    if line is None:
        return None
    try:
        argv = shlex.split(line.split("Command:", 1)[1])
    except ValueError:
        return None
    items, on = {}, False
    for arg in argv:
        if arg in ("--config", "-C"):
            on = True
        elif arg.startswith("-"):
            on = False
        elif on and "=" in arg:
            key, _, value = arg.partition("=")
            items[key] = value
    return items


def run_dry_run(experiment: str, overrides: str, profile: str, workdir: Path) -> str:
    """``snakemake -n --profile <profile> --config experiment=NAME``; about a minute for paper."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--profile", profile, "--config"]
    cmd.append(f"experiment={experiment}")
    if overrides:
        cmd.append(f"overrides={overrides}")
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}{done.stdout[-2000:]}")
    return done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dry_run", nargs="?", help="file with snakemake -n output ('-' or default: stdin)"
    )
    parser.add_argument("--partitions", default=str(DEFAULT_PARTITIONS))
    parser.add_argument(
        "--experiment",
        help="compose this experiment; without a dry-run file, run the dry run itself",
    )
    parser.add_argument("--overrides", default="", help='Hydra overrides, as overrides="..."')
    parser.add_argument("--profile", default=str(DEFAULT_PROFILE), help="for the dry run")
    parser.add_argument("--workdir", default=str(REPO_ROOT), help="where results/ and data/ are")
    parser.add_argument("--by", help="also split each rule by this wildcard, e.g. testset")
    parser.add_argument("--tsv", help="write the per-(partition, rule) cost plan here")
    parser.add_argument("--json", help="write the cost plan (and per-job costs) here")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    if args.dry_run and args.dry_run != "-":
        text = Path(args.dry_run).read_text()
    elif args.experiment and not args.dry_run:
        try:
            text = run_dry_run(args.experiment, args.overrides, args.profile, workdir)
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 2
    else:
        text = sys.stdin.read()
    cp = None
    config = _compose(text, args.experiment, args.overrides)
    if config is not None:
        name = args.experiment or str(config.get("experiment_name") or "")
        cp = cost_plan(text, config, args.partitions, workdir, experiment=name, by=args.by)
        rows = [row for row, _ in cp.jobs]
    else:
        rows = plan(text, args.partitions, workdir)
    if not rows:
        print("no cluster jobs found in the dry-run text", file=sys.stderr)
        return 1
    print("\t".join(COLUMNS))
    for row in rows:
        print("\t".join(str(row.get(c, "")) for c in COLUMNS))
    if cp is None:
        summary = Counter((r["partition"], r["rule"]) for r in rows)
        print(f"{len(rows)} cluster jobs (no cost plan: see above):", file=sys.stderr)
        for (partition, rule), n in sorted(summary.items()):
            print(f"  {partition:<8} {rule:<36} {n:>7}", file=sys.stderr)
        return 0
    print(format_table(cp), file=sys.stderr)
    if args.tsv:
        write_tsv(cp, args.tsv)
    if args.json:
        write_json(cp, args.json, with_jobs=True)
    return 0


def _compose(text: str, experiment: str | None, overrides: str) -> dict | None:
    """The config the dry run used: --experiment, else its printed command line, else default."""
    from multilabel_llm.workflow.config import ConfigError, load_config

    items = {"experiment": experiment} if experiment else config_items_from_dry_run(text) or {}
    if overrides:
        items["overrides"] = overrides
    try:
        return load_config(dict(items))
    except ConfigError as err:
        print(f"cost plan skipped: cannot compose the config ({err})", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
