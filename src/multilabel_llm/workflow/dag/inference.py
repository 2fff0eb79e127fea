"""The inference stage of the grid (rules/inference.smk): the engine services, and the inputs
and params of every job that runs a prompt through a model (traces, breakdown scores,
attention; rules/estimators.smk's marginalize too). Model params and resources: ModelStage."""

from __future__ import annotations

from functools import cached_property

from multilabel_llm.engine.backend import CONFIG_ENGINES, rule_engine
from multilabel_llm.workflow.dag.core import DagCore, wildcard_dict


class InferenceStage(DagCore):
    """Engine services and inference jobs."""

    # -- engine services (rule engine_service; engine/service.py) ------------------------------

    # rule engine_service's {engine}: every engine a model config may name (engine/backend.py)
    engine_names = "|".join(CONFIG_ENGINES)

    @property
    def engine_services(self) -> bool:
        """Whether model-bound jobs are clients of one engine service per (dataset, model,
        engine) (config key ``engine_service``) rather than loading their own model."""
        return bool(self.config.get("engine_service", True))

    def engine_address(self, dataset: str, model: str, engine: str) -> str:
        return f"{self.results}/engines/{dataset}/{model}/{engine}.json"

    def engine_service_input(self, rule: str):
        """Input function of a model-bound ``rule``: the address file of the engine service
        its job runs in (a Snakemake service: the service and the jobs that need to run form
        one group), or nothing when every job loads its own model."""

        def address(wc) -> list[str]:
            if not self.engine_services:
                return []
            wildcards = wildcard_dict(wc)
            prompt = self.prompt(wc.prompt) if "prompt" in wildcards else None
            engine = rule_engine(rule, self.model(wc.model), prompt)
            return [self.engine_address(wc.dataset, wc.model, engine)]

        return address

    def served_threads(self, wc) -> int:
        """Threads of a model-bound job: none of its own when its engine service holds the
        cores (a client waits on a socket), else the model's."""
        return 0 if self.engine_services else self.model_threads(wc)

    def served_resources(self) -> dict:
        """Resources of a model-bound job: a client's (no GPU, little memory, the size class's
        runtime) when an engine service holds the model, else the model's size class."""
        if not self.engine_services:
            return self.model_resources()
        # a group's string resources must agree: gpu_model stays the service's
        resources = self.model_resources({"runtime": 60, "gpu_model": ""})
        return {**resources, "mem_mb": 1000, "gpu": 0}

    def engine_service_jobs(self, dataset: str, model: str) -> int:
        """How many jobs one engine service of (dataset, model) can be asked to serve at most:
        the pair's traced cells plus one per (test set, method) of its studies."""
        cells, method_cells = set(), set()
        for study in self.studies.values():
            for cell in study.trace_runs():
                if (cell["dataset"], cell["model"]) == (dataset, model):
                    cells.add((cell["prompt"], cell["testset"]))
                    method_cells.update((cell["testset"], m) for m in study.methods)
        return max(1, len(cells) + len(method_cells))

    def engine_service_resources(self) -> dict:
        """The model's size class; runtime: the per-job runtime times the jobs it may serve
        (the group's clients run one after another through it), capped at the size class's
        ``max_runtime`` (default 2880 minutes, the partitions' limit in profiles/slurm)."""
        resources = self.model_resources()
        per_job = resources["runtime"]

        def runtime(wc) -> int:
            size = self.config["resources"]["size_classes"][self.model(wc.model)["size_class"]]
            jobs = self.engine_service_jobs(wc.dataset, wc.model)
            return min(per_job(wc) * jobs, size.get("max_runtime") or 2880)

        resources["runtime"] = runtime
        return resources

    # --- inference jobs ----------------------------------------------------------------------

    @cached_property
    def hidden_prompts(self) -> list[str]:
        return [p for p in self.prompts if self.prompt(p).get("hidden_states")]

    @cached_property
    def plain_prompts(self) -> list[str]:
        return [p for p in self.prompts if p not in self.hidden_prompts]

    def inference_inputs(self, wc) -> dict:
        """What an inference job of a (dataset, model, test set) reads: the dataset, the ids,
        the shared demo pool, the SFT adapter of an -sft slot and a stand-in directory."""
        inputs = {
            "examples": self.data(wc.dataset, "examples.parquet"),
            "meta": self.data(wc.dataset, "meta.json"),
            "ids": self.testset_ids(wc.dataset, wc.testset),
            # the dataset's shared demo pool: every run of a prompt shows the same demos
            "demo_pool": self.data(wc.dataset, "demo_pool.txt"),
        }
        # what decides the job's output, as files that travel with the results folder
        wildcards = wildcard_dict(wc)
        inputs["decided_model"] = self.decided_model(wc.model)
        if "prompt" in wildcards:
            inputs["decided_prompt"] = self.decided("prompts", wc.prompt, self.prompt(wc.prompt))
        else:  # breakdown prompts: their own header and demos
            inputs["decided_prompt"] = self.decided(
                "prompts", "_breakdown", self.config["breakdown"]
            )
        if "method" in wildcards:  # marginalize
            inputs["decided_method"] = self.decided("methods", wc.method, self.method(wc.method))
        return inputs | self.model_inputs(wc)

    def inference_params(self) -> dict:
        """Params of every job that runs a prompt of the experiment through a model."""
        return {
            "model": lambda wc: self.model_params(wc.model),
            "prompt": lambda wc: self.prompt(wc.prompt),
            "demo_split": self.demo_split,
            "loader": self.loader,
        }
