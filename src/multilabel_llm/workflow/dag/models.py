"""The model slots' stage of the grid: rules/models.smk (the hub downloads) and
rules/standins.smk (the CPU stand-ins), and the params, resources, files and decision file of
every rule that loads a model (rules/inference.smk, rules/estimators.smk, rules/sft.smk)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from multilabel_llm.engine import version
from multilabel_llm.workflow import model_download
from multilabel_llm.workflow.dag.core import DagCore, DagError, wildcard_dict
from multilabel_llm.workflow.model_download import DownloadError, as_params, planned_downloads

# Keys that only place or pace a job; leaving them out of params keeps a change to them
# (a bigger partition, more threads) from rerunning finished inference.
PLACEMENT_KEYS = ("size_class", "threads")


class ModelStage(DagCore):
    """Downloads, stand-ins, params, resources and files of the model slots."""

    def model_downloads(self) -> list[dict]:
        """The hub repos (id, revision) this experiment loads: rule download_models' params."""
        try:
            return as_params(planned_downloads(self.config))
        except DownloadError as err:
            raise DagError(str(err)) from None

    @cached_property
    def software(self) -> dict:
        """torch and transformers versions of the environment the jobs run in (the profiles
        run jobs in the environment snakemake was started from). The cached rules carry them
        as a param, so the between-workflow cache key (`--cache`) changes with them; the model
        revision is part of model_params. Read from package metadata: importing torch would
        slow every parse. Looked up when asked (a module attribute), as the engine version is."""
        return model_download.software_versions()

    @property
    def engine_version(self) -> int:
        """``engine.version.ENGINE_VERSION``: a param of the model-bound rules, so their
        finished outputs rerun (and their ``--cache`` key moves) when the engine changes what
        it writes."""
        return version.ENGINE_VERSION

    # --- params, resources, files ------------------------------------------------------------

    def size_class_resources(self, model: str) -> dict:
        """Portable resources of a model's size class; profiles map them to partitions."""
        size = self.config["resources"]["size_classes"][self.model(model)["size_class"]]
        resources = {
            "mem_mb": size["mem_mb"],
            "runtime": size["runtime"],
            "cpus_per_task": size.get("cpus_per_task", 1),
        }
        if size.get("gpu"):
            resources["gpu"] = size["gpu"]
            resources["gpu_model"] = size["gpu_model"]
        return resources

    def model_resources(self, defaults: dict[str, Any] | None = None) -> dict:
        """Resource callables of a rule keyed by {model}: each key of ``defaults`` (memory,
        runtime, GPUs) from the model's size class, or the default where the class has none."""
        defaults = defaults or {"mem_mb": 4000, "runtime": 60, "gpu": 0, "gpu_model": ""}
        return {
            key: (
                lambda wc, key=key, default=default: (
                    self.size_class_resources(wc.model).get(key) or default
                )
            )
            for key, default in defaults.items()
        }

    def model_threads(self, wc) -> int:
        return (
            self.model(wc.model).get("threads")
            or self.size_class_resources(wc.model)["cpus_per_task"]
        )

    def model_params(self, name: str) -> dict:
        """The model config a job needs, without placement-only keys.

        The size class's batch size (and GPU memory cap) ride along as ``resources``: they
        decide batch composition, hence bf16 padding numerics, so they belong to params.
        """
        cfg = self.model(name)
        params = {k: v for k, v in cfg.items() if k not in PLACEMENT_KEYS}
        size = self.config["resources"]["size_classes"].get(cfg.get("size_class"), {})
        spec_keys = {k: size[k] for k in ("batch_size", "gpu_mem_mb") if k in size}
        if spec_keys:
            params["resources"] = spec_keys
        return params

    def model_files(self, model: str) -> dict:
        """Files a job of ``model`` reads besides the config: its stand-in directory, if any."""
        cfg = self.model(model)
        return {"standin": cfg["path"]} if cfg.get("standin") else {}

    def model_inputs(self, wc) -> dict:
        """The model's files a job that loads it reads (an engine service, an inference job):
        its stand-in directory and, for an SFT slot, the dataset's adapter."""
        inputs = self.model_files(wc.model)
        adapter = self.model(wc.model).get("adapter")
        if adapter:
            inputs["adapter"] = adapter.format(**wildcard_dict(wc))
        return inputs

    def standin_spec(self, standin: str) -> dict:
        """The stand-in's spec: its config block, its name, and the experiment's prompts (the
        formats it learns to answer in; multilabel_llm.workflow.standins)."""
        # data.prompts pulls in pandas: imported where a stand-in is built, not at every parse
        from multilabel_llm.data.prompts import prompt_formats

        for slot in self.models:
            cfg = self.model(slot)
            if cfg.get("standin") and Path(cfg.get("path") or "").name == standin:
                return {
                    **cfg["standin"],
                    "name": cfg["name"],
                    # only what shapes the prompt text: a label order or hidden-state switch
                    # rebuilds nothing
                    "prompts": prompt_formats([self.prompt(p) for p in self.prompts]),
                }
        raise DagError(f"no model slot builds the stand-in {standin!r}")

    # --- what decided a model-bound output ---------------------------------------------------

    def decided_model(self, model: str) -> str:
        """Model-bound rules: the model params (batch size of its size class included) and the
        engine version."""
        return self.decided("models", model, self.decided_model_content(model))

    def decided_model_content(self, model: str) -> dict:
        return {"model": self.model_params(model), "engine": self.engine_version}
