# The only place with Python logic for the DAG: config composition, validation, grid helpers.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from multilabel_llm.config import ConfigError, load_config

try:
    _composed = load_config(config)
except ConfigError as err:
    # A bad key or value stops the run before any job starts.
    raise WorkflowError(str(err)) from None

config.clear()
config.update(_composed)

RESULTS = config["results_dir"]
DATASETS = list(config["datasets"])
MODELS = list(config["models"])
PROMPTS = list(config["prompts"])
METHODS = list(config["methods"])
TESTSETS = list(config["testsets"])


wildcard_constraints:
    dataset="|".join(DATASETS) or "NONE",
    model="[^/]+",
    prompt="|".join(PROMPTS) or "NONE",
    testset="[^/]+",
    method="[^/]+",


def dataset_cfg(name):
    return config["datasets"][name]


def model_cfg(name):
    return config["models"][name]


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
