# The only place with Python logic for the DAG: config composition, validation, grid helpers.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from multilabel_llm.config import ConfigError, load_config
from multilabel_llm.model_download import (
    DownloadError,
    as_params,
    planned_downloads,
    software_versions,
)
from multilabel_llm.studies import SFT_SUFFIX, StudyError, resolve_studies

try:
    _composed = load_config(config)
    # the experiment's studies: which cells of the grid each table and figure needs
    STUDIES = resolve_studies(_composed)
except (ConfigError, StudyError) as err:
    # A bad key or value stops the run before any job starts.
    raise WorkflowError(str(err)) from None

config.clear()
config.update(_composed)

RESULTS = config["results_dir"]
DATASETS = list(config["datasets"])
MODELS = list(config["models"])
PROMPTS = list(config["prompts"])
METHODS = list(config["methods"])


def dataset_cfg(name):
    return config["datasets"][name]


def model_cfg(name):
    """A configured model slot, or "<slot>-sft": that model with its LoRA adapter applied.

    The adapter path keeps a {dataset} placeholder: SFT trains one adapter per dataset and
    model (rules/sft.smk), filled in from the job's wildcards.
    """
    if name in config["models"]:
        return config["models"][name]
    base = name.removesuffix(SFT_SUFFIX)
    if name.endswith(SFT_SUFFIX) and base in config["models"]:
        return {
            **config["models"][base],
            "name": config["models"][base]["name"] + SFT_SUFFIX,
            "adapter": f"{RESULTS}/sft/{{dataset}}/{base}/adapter",
            "sft_of": base,
        }
    raise WorkflowError(
        f"unknown model slot {name!r}; configured: {sorted(config['models'])} "
        f"(and each with the {SFT_SUFFIX!r} suffix for its SFT adapter)"
    )


def prompt_cfg(name):
    return config["prompts"][name]


def method_cfg(name):
    return config["methods"][name]


def training_cfg():
    return config["training"]


def model_resources(name):
    """Portable resources of a model's size class; profiles map them to partitions."""
    size = config["resources"]["size_classes"][model_cfg(name)["size_class"]]
    resources = {
        "mem_mb": size["mem_mb"],
        "runtime": size["runtime"],
        "cpus_per_task": size.get("cpus_per_task", 1),
    }
    if size.get("gpu"):
        resources["gpu"] = size["gpu"]
        resources["gpu_model"] = size["gpu_model"]
    return resources


# Keys that only place or pace a job; leaving them out of params keeps a change to them
# (a bigger partition, more threads) from rerunning finished inference.
PLACEMENT_KEYS = ("size_class", "threads")

# torch and transformers versions of the environment the jobs run in (the profiles run jobs
# in the environment snakemake was started from). The cached rules carry them as a param, so
# the between-workflow cache key changes with them; the model revision is part of the model
# config, hence of model_params(). Read from package metadata: importing torch here would
# slow every parse.
SOFTWARE = software_versions()

# Jobs load models from the local hub cache only; rule download_models (rules/models.smk) is
# the one step that goes online. An explicit HF_HUB_OFFLINE=0 in the environment wins.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The hub repos (id, revision) this experiment loads: rule download_models' params.
try:
    MODEL_DOWNLOADS = as_params(planned_downloads(config))
except DownloadError as err:
    raise WorkflowError(str(err)) from None


def model_params(name):
    """The model config a job needs, without placement-only keys.

    The size class's batch size (and GPU memory cap) ride along as ``resources``: they
    decide batch composition, hence bf16 padding numerics, so they belong to params.
    """
    cfg = model_cfg(name)
    params = {k: v for k, v in cfg.items() if k not in PLACEMENT_KEYS}
    size = config["resources"]["size_classes"].get(cfg.get("size_class"), {})
    spec_keys = {k: size[k] for k in ("batch_size", "gpu_mem_mb") if k in size}
    if spec_keys:
        params["resources"] = spec_keys
    return params


def model_resource(key, default=0):
    """Resource callable for rules keyed by {model}: its size class's value, or ``default``."""
    return lambda wildcards: model_resources(wildcards.model).get(key) or default


def model_threads(wildcards):
    return (
        model_cfg(wildcards.model).get("threads")
        or model_resources(wildcards.model)["cpus_per_task"]
    )


def final_outputs():
    """The default target: every table (CSV/MD/TeX) and everything the report shows.

    Called from the Snakefile after every rules file is included, so the stage files'
    target lists exist by then.
    """
    return [
        f"{RESULTS}/tables/table1_datasets.csv",
        *ALIGNMENT_TARGETS,
        *TOKEN_LEVEL_TARGETS,
        *PAPER_TABLE_TARGETS,
        *REPORT_TARGETS,
        *PAPER_COMPARISON_TARGETS,
    ]


# Per-stage helpers, in the order the Snakefile includes the stages.
include: "common/data.smk"
include: "common/standins.smk"
include: "common/inference.smk"
include: "common/estimators.smk"
include: "common/metrics.smk"
include: "common/probes.smk"
include: "common/analyses.smk"
include: "common/paper_comparison.smk"
include: "common/figures.smk"
include: "common/explorer.smk"
include: "common/report.smk"
