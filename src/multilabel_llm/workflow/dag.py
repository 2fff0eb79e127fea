"""The workflow's grid: every path, input list, param and target the Snakemake rules need.

``WorkflowDag(config, studies)`` wraps a composed config (multilabel_llm.workflow.config.load_config) and
its resolved studies (multilabel_llm.workflow.studies.resolve_studies); rules/*.smk call its methods as
input functions (``unpack(dag.inference_inputs)``), param builders and target lists. Nothing
here imports Snakemake: the rules turn a ``DagError`` into a ``WorkflowError``, and the grid can
be built and tested in a plain Python process.

Wildcards are read by attribute (``wc.dataset``), so a ``types.SimpleNamespace`` stands in for
Snakemake's wildcards object in tests.

Slot contracts made explicit here:

- ``{model}-sft`` slots are synthesised (``model``): slot ``<m>`` with the LoRA adapter that
  rules/sft.smk trains per dataset, its path keeping a ``{dataset}`` placeholder;
- the writer of ``distributions/.../{method}.parquet`` follows from the method's ``kind`` alone
  (``methods_written_by``, multilabel_llm.workflow.studies.DISTRIBUTION_PRODUCERS), never from its slot
  name: each rule writing such a file constrains ``{method}`` to its own producer's methods.
"""

from __future__ import annotations

import os
import sys
from functools import cached_property
from pathlib import Path
from typing import Any

from multilabel_llm.workflow.studies import (
    FAMILY_FIGURES,
    SFT_SUFFIX,
    TRACE_KINDS,
    Study,
    alignment_runs,
    artifact_owner,
    evaluated_testsets,
    mechanism_cells,
    methods_of_producer,
    paper_tables,
    probe_cells,
)

# Keys that only place or pace a job; leaving them out of params keeps a change to them
# (a bigger partition, more threads) from rerunning finished inference.
PLACEMENT_KEYS = ("size_class", "threads")

MECHANISMS = "Mechanisms (§4, §D)"
ALIGNMENT = "Alignment (§5, §D)"

# figure -> plot kind (multilabel_llm.report.plots), source, report subcategory, short content.
# source: an analysis CSV of analyze_traces, "probes" (probe scores) or "alignment" (tables).
# Its caption is the figure's block of workflow/report/figures.rst.
FIGURES: dict[str, tuple[str, str, str, str]] = {
    "fig1": ("fig1", "example_steps", "Per-step probabilities", "one example, step by step"),
    "fig2": ("fig2", "step_stats", "Per-step probabilities", "top probabilities per step"),
    "fig3": (
        "fig3",
        "step_stats",
        "Per-step probabilities",
        "second-highest probabilities per step",
    ),
    "fig4": (
        "fig4",
        "first_step_sorted",
        "First-step distribution",
        "sorted first-step probabilities",
    ),
    "fig5": (
        "fig5",
        "label_position_accuracy",
        "Label order and ICL",
        "accuracy of 1st vs 2nd label",
    ),
    "fig6": ("fig6", "multilabel_rate", "Label order and ICL", "multi-label outputs vs demos"),
    "fig7": ("fig7", "probes", "Linear probes", "probe micro-F1"),
    "fig8": ("fig8", "alignment", "Binary breakdown", "binary: probabilities vs outcomes"),
    "fig9": ("fig9", "step_stats", "Per-step probabilities", "top two probabilities (box plots)"),
    "fig10": ("fig10", "step_stats", "Per-step probabilities", "entropies per step"),
    "fig11": (
        "fig11",
        "second_position",
        "Second-highest label",
        "where the 2nd-highest label is predicted",
    ),
    "fig12": ("fig12", "alignment", "Base vs instruct", "base vs instruct F1 / NLL"),
    "fig13": ("fig2", "step_stats", "Other families", "top probabilities"),
    "fig14": ("fig3", "step_stats", "Other families", "second-highest probabilities"),
    "fig15": ("fig7", "probes", "Linear probes", "probe micro-F1"),
    "fig16": ("fig9", "step_stats", "Other families", "top two probabilities"),
}

PAPER_TABLE_TITLES = {
    "table2": "Table 2, distribution alignment (paper: Llama3 70B Instruct)",
    "table5": "Table 5, distribution alignment (paper: Llama3 8B)",
}

# mechanism table -> (the study artifact listing it, the per-run analysis CSV it stacks, whether
# its rows also carry the prompt: the label-order sweep)
MECHANISM_TABLES = {
    "table4_second_never": ("table4", "second_never", False),
    "second_next": ("second_next", "second_next", False),
    "table6_attention": ("table6", "attention_summary", False),
    "table7_label_order": ("table7", "label_order", True),
}

ALIGNMENT_COLUMNS = [
    "model",
    "prompt",
    "testset",
    "method",
    "display_name",
    "nll",
    "nll_ci_low",
    "nll_ci_high",
    "l1",
    "example_f1",
    "example_f1_ci_low",
    "example_f1_ci_high",
]

BINARY_BIAS_TABLE = {
    "title": "Binary breakdown: answer-position bias",
    "caption": (
        "Per binary-breakdown run: mean P('a') over the asked prompts and the share "
        "answered 'a' (0.5 without a position preference), the fitted position term "
        "(logits, > 0 favours 'a'; only with combine: position_term), and the Spearman "
        "correlation between a label's place in the list and its mean Bradley-Terry score "
        "(near 1: later labels win because they are shown as 'b'). orders: one asks each "
        "pair in label order (the paper's method); both asks it both ways."
    ),
    "subcategory": ALIGNMENT,
    "digits": 3,
    "columns": [
        "dataset",
        "model",
        "testset",
        "method",
        "orders",
        "combine",
        "mean_p_a",
        "share_a",
        "position_term",
        "score_position_corr",
    ],
}


class DagError(ValueError):
    """A grid the config cannot build (unknown slot, missing stand-in); rules/common.smk turns
    it into a WorkflowError."""


def put_this_python_first_on_path() -> None:
    """Put the running Python's directory first on PATH (inherited by every job), so a shell
    rule's ``python`` is the one Snakemake runs in, as a script directive's is."""
    here = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != here:
        os.environ["PATH"] = os.pathsep.join([here, path]) if path else here


def _wildcards(wc) -> dict[str, str]:
    """Snakemake's wildcards (a Namedlist), a dict or a namespace, as a plain dict."""
    if isinstance(wc, dict):
        return dict(wc)
    if hasattr(wc, "items"):
        return dict(wc.items())
    return dict(vars(wc))


def _constraint(names: list[str]) -> str:
    """A wildcard constraint matching exactly ``names`` ("NONE" when empty)."""
    return "|".join(names) or "NONE"


class WorkflowDag:
    """Paths, inputs, params and targets of the experiment's jobs (see the module docstring)."""

    def __init__(self, config: dict, studies: dict[str, Study], basedir: str | Path = "."):
        self.config = config
        self.studies = studies
        self.basedir = Path(basedir)
        self.results = config.get("results_dir") or "results"
        self.datasets = list(config["datasets"])
        self.models = list(config["models"])
        self.prompts = list(config["prompts"])
        self.methods = list(config["methods"])
        self.trace_dir = f"{self.results}/traces/{{dataset}}/{{model}}/{{prompt}}/{{testset}}"
        self.breakdown_dir = f"{self.results}/breakdown/{{dataset}}/{{model}}/{{testset}}"
        self.figures = FIGURES
        self.mechanism_tables = MECHANISM_TABLES
        self._decided_written: set[str] = set()
        self._digests: dict = {}

    @property
    def trace_analyses(self) -> tuple[str, ...]:
        """The per-run CSVs of rule analyze_traces (multilabel_llm.analyses.mechanisms.TRACE_ANALYSES)."""
        from multilabel_llm.analyses.mechanisms import TRACE_ANALYSES

        return TRACE_ANALYSES

    @classmethod
    def compose(cls, snakemake_config: dict, basedir: str | Path = ".") -> WorkflowDag:
        """The grid of ``snakemake --config`` values: the composed, validated Hydra config
        (multilabel_llm.workflow.config.load_config) and its studies; any config error is a DagError."""
        from multilabel_llm.workflow.config import ConfigError, load_config
        from multilabel_llm.workflow.studies import StudyError, resolve_studies

        try:
            config = load_config(snakemake_config)
            # the experiment's studies: which cells of the grid each table and figure needs
            return cls(config, resolve_studies(config), basedir)
        except (ConfigError, StudyError) as err:
            raise DagError(str(err)) from None

    def model_downloads(self) -> list[dict]:
        """The hub repos (id, revision) this experiment loads: rule download_models' params."""
        from multilabel_llm.workflow.model_download import (
            DownloadError,
            as_params,
            planned_downloads,
        )

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
        slow every parse."""
        from multilabel_llm.workflow.model_download import software_versions

        return software_versions()

    @property
    def engine_version(self) -> int:
        """``engine.version.ENGINE_VERSION``: a param of the model-bound rules, so their
        finished outputs rerun (and their ``--cache`` key moves) when the engine changes what
        it writes."""
        from multilabel_llm.engine.version import ENGINE_VERSION

        return ENGINE_VERSION

    # --- config slots ------------------------------------------------------------------------

    def dataset(self, name: str) -> dict:
        return self.config["datasets"][name]

    def prompt(self, name: str) -> dict:
        return self.config["prompts"][name]

    def method(self, name: str) -> dict:
        return self.config["methods"][name]

    @property
    def training(self) -> dict:
        return self.config["training"]

    def model(self, name: str) -> dict:
        """A configured model slot, or "<slot>-sft": that model with its LoRA adapter applied.

        The adapter path keeps a {dataset} placeholder: SFT trains one adapter per dataset and
        model (rules/sft.smk), filled in from the job's wildcards.
        """
        models = self.config["models"]
        if name in models:
            return models[name]
        base = name.removesuffix(SFT_SUFFIX)
        if name.endswith(SFT_SUFFIX) and base in models:
            return {
                **models[base],
                "name": models[base]["name"] + SFT_SUFFIX,
                "adapter": f"{self.results}/sft/{{dataset}}/{base}/adapter",
                "sft_of": base,
            }
        raise DagError(
            f"unknown model slot {name!r}; configured: {sorted(models)} "
            f"(and each with the {SFT_SUFFIX!r} suffix for its SFT adapter)"
        )

    def method_kind(self, method: str) -> str:
        return self.method(method)["kind"]

    def method_settings(self, method: str) -> dict:
        """The method's ``params`` block (what workflow/scripts/estimate.py gets as settings)."""
        return dict(self.method(method).get("params") or {})

    def demo_split(self, wc) -> str:
        return self.dataset(wc.dataset).get("demo_split", "train")

    def loader(self, wc) -> str | None:
        return self.dataset(wc.dataset).get("loader")

    def study_of(self, artifact: str) -> Study | None:
        """The study producing ``artifact`` (table4, fig2, …), or None when none lists it."""
        return artifact_owner(self.studies, artifact)

    # --- models: params, resources, files ---------------------------------------------------

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

    # -- engine services (rule engine_service; engine/service.py) ------------------------------
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
        from multilabel_llm.engine.backend import rule_engine

        def address(wc) -> list[str]:
            if not self.engine_services:
                return []
            wildcards = _wildcards(wc)
            prompt = self.prompt(wc.prompt) if "prompt" in wildcards else None
            engine = rule_engine(rule, self.model(wc.model), prompt)
            return [self.engine_address(wc.dataset, wc.model, engine)]

        return address

    def model_inputs(self, wc) -> dict:
        """The model's files a job that loads it reads (an engine service, an inference job):
        its stand-in directory and, for an SFT slot, the dataset's adapter."""
        inputs = self.model_files(wc.model)
        adapter = self.model(wc.model).get("adapter")
        if adapter:
            inputs["adapter"] = adapter.format(**_wildcards(wc))
        return inputs

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

    def standin_spec(self, standin: str) -> dict:
        """The stand-in's spec: its config block, its name, and the experiment's prompts (the
        formats it learns to answer in; multilabel_llm.workflow.standins)."""
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

    # --- what decided an output (decision files) ---------------------------------------------

    def decided(self, group: str, name: str, content: dict) -> str:
        """``{results}/decided/{group}/{name}.json``: the config values (and raw-file digests)
        that decide a family of outputs, as an input of the rules that write them. It is
        rewritten only when its content changes, so its new mtime reruns exactly the jobs it
        decides, also where Snakemake's own records cannot see the change: a raw file edited
        with its mtime kept, or a results folder copied or moved (Snakemake keys its records
        of params by path). Input functions call this, so only jobs of the DAG write one."""
        path = f"{self.results}/decided/{group}/{name}.json"
        if path not in self._decided_written:
            write_decision(path, content)
            self._decided_written.add(path)
        return path

    def decided_dataset(self, wc) -> str:
        """Rule prepare_dataset: the dataset config and a digest of each raw file it reads."""
        from multilabel_llm.data import input_files

        cfg = self.dataset(wc.dataset)
        files = {f: file_digest(f, self._digests) for f in input_files(cfg)}
        return self.decided("datasets", wc.dataset, {"config": cfg, "files": files})

    def decided_testset(self, wc) -> str:
        """Rule build_testsets: the test set's config and a digest of its id file, if any."""
        from multilabel_llm.data.testsets import input_files

        cfg = self.testset_cfg(wc)
        files = {
            f: file_digest(f, self._digests)
            for f in input_files(self.dataset(wc.dataset), wc.testset)
        }
        return self.decided(f"testsets/{wc.dataset}", wc.testset, {"config": cfg, "files": files})

    def decided_model(self, model: str) -> str:
        """Model-bound rules: the model params (batch size of its size class included) and the
        engine version."""
        return self.decided("models", model, self.decided_model_content(model))

    def decided_model_content(self, model: str) -> dict:
        return {"model": self.model_params(model), "engine": self.engine_version}

    # --- data --------------------------------------------------------------------------------

    def data(self, dataset: str, name: str) -> str:
        """A file of the prepared dataset: examples.parquet, meta.json, demo_pool.txt."""
        return f"{self.results}/data/{dataset}/{name}"

    def testset_ids(self, dataset: str, testset: str) -> str:
        return f"{self.results}/data/{dataset}/testsets/{testset}.txt"

    def dataset_files(self, wc) -> list[str]:
        """The dataset's published files that exist (a missing one fails in the loader)."""
        from multilabel_llm.data import input_files

        return input_files(self.dataset(wc.dataset))

    def testset_files(self, wc) -> list[str]:
        from multilabel_llm.data.testsets import input_files

        return input_files(self.dataset(wc.dataset), wc.testset)

    def testset_cfg(self, wc) -> dict:
        from multilabel_llm.data.testsets import get_testset_cfg

        return get_testset_cfg(self.dataset(wc.dataset), wc.testset)

    def evaluated_testsets(self, dataset: str) -> list[str]:
        """Test sets some run of the experiment traces or scores: the shared demo pool (and
        the SFT / Demux dev sets) leave their ids out."""
        return evaluated_testsets(self.config, self.studies, dataset)

    def evaluated_ids(self, wc) -> list[str]:
        return [self.testset_ids(wc.dataset, t) for t in self.evaluated_testsets(wc.dataset)]

    def demo_shots_needed(self, wc) -> int:
        """The most demonstrations the dataset's runs ask for (rule demo_pool's ``need``)."""
        return self.demo_shots_asked(wc.dataset)[0]

    def demo_shots_source(self, wc) -> str:
        """The config key asking for the most demonstrations, named when the pool is short."""
        return self.demo_shots_asked(wc.dataset)[1]

    def demo_shots_asked(self, dataset: str) -> tuple[int, str]:
        """(shots, config key) of the largest demo request of any prompt (or its dataset
        template) and, when a breakdown method scores this dataset, of ``breakdown.n_shots``."""
        asked = [
            (int(self.prompt(name).get("n_shots", 10)), f"prompts.{name}.n_shots")
            for name in self.prompts
        ]
        for name in self.prompts:
            for key, template in (self.prompt(name).get("templates") or {}).items():
                if "n_shots" in (template or {}):
                    asked.append(
                        (int(template["n_shots"]), f"prompts.{name}.templates.{key}.n_shots")
                    )
        if any(
            self.method_kind(run["method"]) in ("unary", "binary")
            for run in self.scored_runs(dataset)
        ):
            asked.append((int(self.config["breakdown"].get("n_shots", 10)), "breakdown.n_shots"))
        return max(asked, key=lambda item: item[0], default=(0, "prompts"))

    # --- inference ---------------------------------------------------------------------------

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
        wildcards = _wildcards(wc)
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

    def traces(self, dataset: str, model: str, prompt: str, testset: str) -> str:
        return f"{self.results}/traces/{dataset}/{model}/{prompt}/{testset}/traces.jsonl.gz"

    def probe_inputs(self) -> dict:
        """Hidden states and traces of the probe train and eval test sets of a (dataset, model,
        prompt) (config training.probes.train_testset / eval_testset)."""
        probes = self.training["probes"]
        run = f"{self.results}/traces/{{dataset}}/{{model}}/{{prompt}}"
        return {
            f"{split}_{name}": f"{run}/{probes[split + '_testset']}/{file}"
            for split in ("train", "eval")
            for name, file in (("hidden", "hidden.npz"), ("traces", "traces.jsonl.gz"))
        }

    # --- distributions -----------------------------------------------------------------------

    def methods_written_by(self, producer: str) -> str:
        """Wildcard constraint of the rule writing ``producer``'s ``{method}.parquet`` files
        (producers: multilabel_llm.workflow.studies.DISTRIBUTION_PRODUCERS; one per method kind)."""
        return _constraint(methods_of_producer(self.config, producer))

    def distributions_dir(self) -> str:
        return f"{self.results}/distributions/{{dataset}}/{{model}}/{{prompt}}/{{testset}}"

    def trace_model(self, method: str, model: str) -> str:
        """Model slot whose traces ``method`` reads for row ``model``: itself, or e.g. the
        "{model}-sft" of the method's ``traces_from``."""
        return self.method_settings(method).get("traces_from", "{model}").format(model=model)

    def estimate_inputs(self, wc) -> dict:
        """Inputs of a method's estimate: the method config's kind decides them."""
        from multilabel_llm.methods.estimators import TRACE_KINDS as ESTIMATOR_TRACE_KINDS

        kind = self.method_kind(wc.method)
        params = self.method_settings(wc.method)
        inputs = {
            "meta": self.data(wc.dataset, "meta.json"),
            "ids": self.testset_ids(wc.dataset, wc.testset),
            "decided_method": self.decided("methods", wc.method, self.method(wc.method)),
        }
        model = self.trace_model(wc.method, wc.model)
        if kind in ESTIMATOR_TRACE_KINDS:
            inputs["traces"] = self.traces(wc.dataset, model, wc.prompt, wc.testset)
        if kind == "compare_to_none_platt":
            calib = params["calibration_testset"]
            inputs["examples"] = self.data(wc.dataset, "examples.parquet")
            inputs["calibration_ids"] = self.testset_ids(wc.dataset, calib)
            inputs["calibration_traces"] = self.traces(wc.dataset, model, wc.prompt, calib)
        if kind in ("unary", "binary"):
            breakdown = f"{self.results}/breakdown/{wc.dataset}/{wc.model}/{wc.testset}"
            inputs[kind] = f"{breakdown}/{kind}.parquet"
            # orders: both also asks every pair the other way round (binary_reversed scores)
            if kind == "binary" and params.get("orders", "one") == "both":
                inputs["binary_reversed"] = f"{breakdown}/binary_reversed.parquet"
        return inputs

    def binary_bias_cells(self) -> list[dict]:
        """The alignment cells of binary-breakdown methods, one position-bias row each.

        Breakdown scores do not depend on the prompt variant, so each (dataset, model, test
        set, method) is listed once, with the first prompt that scores it.
        """
        cells: dict[tuple, dict] = {}
        for d in self.scored_datasets():
            for run in self.scored_runs(d):
                if self.method_kind(run["method"]) == "binary":
                    key = (d, run["model"], run["testset"], run["method"])
                    cells.setdefault(key, {"dataset": d, **run})
        return list(cells.values())

    def binary_bias_files(self) -> list[str]:
        return [
            f"{self.results}/distributions/{c['dataset']}/{c['model']}/{c['prompt']}/"
            f"{c['testset']}/{c['method']}.position_bias.csv"
            for c in self.binary_bias_cells()
        ]

    # --- alignment scoring -------------------------------------------------------------------

    def scored_runs(self, dataset: str) -> list[dict]:
        """Distribution cells {model, prompt, testset, method} the alignment-side studies
        score for ``dataset`` (multilabel_llm.workflow.studies.alignment_runs)."""
        return alignment_runs(self.config, self.studies, dataset)

    def scored_testsets(self, dataset: str) -> list[str]:
        """Test sets scored for ``dataset``, in first-use order."""
        return list(dict.fromkeys(r["testset"] for r in self.scored_runs(dataset)))

    def scored_datasets(self) -> list[str]:
        """Datasets with at least one scored distribution (one alignment table each)."""
        return [d for d in self.datasets if self.scored_runs(d)]

    def distribution(self, dataset: str, run: dict) -> str:
        return (
            f"{self.results}/distributions/{dataset}/{run['model']}/{run['prompt']}/"
            f"{run['testset']}/{run['method']}.parquet"
        )

    def method_rows(self) -> dict:
        """Row names and placement of every method slot (config/method/*.yaml)."""
        keys = ("display_name", "group", "order", "applies_to")
        return {
            m: {k: self.method(m)[k] for k in keys if k in self.method(m)} for m in self.methods
        }

    def dataset_display(self, dataset: str) -> str:
        return self.dataset(dataset).get("display_name", dataset)

    def scoring_inputs(self, wc) -> dict:
        """What scoring a dataset's distributions reads (alignment and token-level tables)."""
        return {
            "examples": self.data(wc.dataset, "examples.parquet"),
            "meta": self.data(wc.dataset, "meta.json"),
            "ids": [self.testset_ids(wc.dataset, t) for t in self.scored_testsets(wc.dataset)],
            "dists": [self.distribution(wc.dataset, run) for run in self.scored_runs(wc.dataset)],
            "decided": self.decided("scoring", "alignment", self.config["alignment"]),
        }

    def scoring_params(self) -> dict:
        """Params both scoring rules share: the runs, test sets, method rows, dataset name."""
        return {
            "runs": lambda wc: self.scored_runs(wc.dataset),
            "testsets": lambda wc: self.scored_testsets(wc.dataset),
            "methods": self.method_rows(),
            "display_name": lambda wc: self.dataset_display(wc.dataset),
        }

    def alignment_metric(self) -> dict:
        """The metric settings of the alignment tables and the explorer (config `alignment:`)."""
        alignment = self.config["alignment"]
        return {"nll_clip": alignment["nll_clip"], "threshold": alignment["threshold"]}

    @cached_property
    def paper_alignment_tables(self) -> dict[str, dict]:
        """table2 / table5 -> {model, prompt, testset} (roles + the alignment study)."""
        return paper_tables(self.config, self.studies)

    def paper_table_title(self, table: str) -> str:
        return PAPER_TABLE_TITLES.get(table, table)

    def alignment_tables(self, ext: str = "csv") -> list[str]:
        return [f"{self.results}/tables/alignment_{d}.{ext}" for d in self.scored_datasets()]

    def token_level_tables(self, ext: str = "csv") -> list[str]:
        """The second paper's tables (rule score_token_level), when the experiment asks."""
        if self.config["alignment"]["token_level_threshold"] is None:
            return []
        return [f"{self.results}/tables/token_level_{d}.{ext}" for d in self.scored_datasets()]

    # --- mechanism analyses ------------------------------------------------------------------

    def prompt_setting(self, wc, key: str, default):
        """A prompt setting as the engine resolves it for this dataset (same template choice:
        the dataset's loader, then its name, then ``default``)."""
        from multilabel_llm.data.prompts import pick_template, resolve_prompt

        cfg = self.prompt(wc.prompt)
        data = self.dataset(wc.dataset)
        name = data.get("name", wc.dataset)
        try:
            spec = resolve_prompt(cfg, name, pick_template(cfg, data.get("loader"), name))
            return getattr(spec, key)
        except (ValueError, TypeError):
            # a prompt without templates (tests, minimal configs): its top-level value
            return cfg.get(key, default)

    def analysis_csv(self, name: str, cell: dict) -> str:
        return (
            f"{self.results}/analyses/{cell['dataset']}/{cell['model']}/{cell['prompt']}/"
            f"{cell['testset']}/{name}.csv"
        )

    def artifact_cells(self, artifact: str, models: list[str] | None = None) -> list[dict]:
        """Trace cells {dataset, model, prompt, testset} of the study producing ``artifact``."""
        study = self.study_of(artifact)
        return [] if study is None else mechanism_cells(study, models)

    def artifact_datasets(self, artifact: str) -> list[str]:
        study = self.study_of(artifact)
        return [] if study is None else study.datasets

    def artifact_models(self, artifact: str) -> list[str]:
        study = self.study_of(artifact)
        return [] if study is None else study.models

    def mechanism_table_inputs(self, wc) -> list[str]:
        """Per-run analysis CSVs a mechanism table (MECHANISM_TABLES) stacks."""
        artifact, analysis, _ = MECHANISM_TABLES[wc.table]
        return [self.analysis_csv(analysis, c) for c in self.artifact_cells(artifact)]

    def mechanism_table_keys(self, wc) -> list[dict]:
        """Columns each stacked CSV gets: dataset and model, plus the prompt for the sweep."""
        artifact, _, sweep = MECHANISM_TABLES[wc.table]
        keys = ("dataset", "model", "prompt") if sweep else ("dataset", "model")
        return [{k: c[k] for k in keys} for c in self.artifact_cells(artifact)]

    # --- figures -----------------------------------------------------------------------------

    def family_of(self, model: str) -> str:
        return self.model(model).get("family", model)

    def figure_models(self, name: str) -> list[str]:
        """Models a figure shows: its study's, restricted to the family of a family figure."""
        models = self.artifact_models(name)
        family = FAMILY_FIGURES.get(name)
        return [m for m in models if self.family_of(m) == family] if family else models

    def model_variant(self, model: str) -> str:
        cfg = self.model(model)
        if cfg.get("sft") or cfg.get("adapter") or "sft" in model.lower():
            return "SFT"
        return "Instruct" if cfg.get("instruct") else "Base"

    def coverage_note(self, name: str) -> str:
        """One caption sentence: what is shown and which paper variants are not configured."""
        study, models = self.study_of(name), self.figure_models(name)
        if study is None or not models:
            return "No study of this experiment lists this figure, so every panel is empty."
        shown = ", ".join(f"{m} ({self.model_variant(m)})" for m in models)
        variants = {self.model_variant(m) for m in models}
        missing = [v for v in ("Base", "Instruct", "SFT") if v not in variants]
        note = (
            f"Study {study.name}: {shown} on {', '.join(study.datasets)} "
            f"(prompts {', '.join(study.prompts)}"
        )
        if study.testsets:
            note += f"; test sets {', '.join(study.testsets)}"
        note += ")."
        if missing:
            note += (
                f" Not configured here: {', '.join(missing)} models (the paper also shows them)."
            )
        return note

    def figure_cells(self, name: str) -> list[dict]:
        """The cells a figure reads: its study's datasets (alignment tables), probe cells, or
        trace cells of its models (Fig 1: the first only, one example of one run as in the
        paper)."""
        source, models, study = FIGURES[name][1], self.figure_models(name), self.study_of(name)
        if source == "alignment":
            return [{"dataset": d} for d in self.artifact_datasets(name)]
        if source == "probes":
            return [] if study is None else probe_cells(study, models)
        cells = self.artifact_cells(name, models)
        return cells[:1] if name == "fig1" else cells

    def figure_inputs(self, wc) -> list[str]:
        name, r = wc.figure, self.results
        source, cells = FIGURES[name][1], self.figure_cells(wc.figure)
        if source == "alignment":
            return [f"{r}/tables/alignment_{c['dataset']}.csv" for c in cells]
        if source == "probes":
            return [
                f"{r}/probes/{c['dataset']}/{c['model']}/{c['prompt']}/probe_scores.csv"
                for c in cells
            ]
        return [self.analysis_csv(source, c) for c in cells]

    def figure_run_keys(self, name: str) -> list[dict]:
        """Columns each stacked CSV gets: dataset (and model; the prompt for the Fig 6 sweep)."""
        keys = {"alignment": ("dataset",), "probes": ("dataset", "model")}.get(
            FIGURES[name][1],
            ("dataset", "model", "prompt") if name == "fig6" else ("dataset", "model"),
        )
        return [{k: c[k] for k in keys} for c in self.figure_cells(name)]

    def figure_select(self, name: str) -> dict:
        """Rows of the alignment tables a figure reads: its study's cells only."""
        study = self.study_of(name)
        if FIGURES[name][1] != "alignment" or study is None:
            return {}
        methods = study.methods
        if name == "fig8":
            # the paper's variants (one order); both-order ones are in the position-bias table
            methods = [
                m
                for m in methods
                if self.method_kind(m) == "binary"
                and self.method_settings(m).get("orders", "one") == "one"
            ]
        return {
            "model": study.models,
            "prompt": study.prompts,
            "testset": study.testsets,
            "method": methods,
        }

    def figure_note(self, name: str) -> str:
        note = self.coverage_note(name)
        if name == "fig6":
            study = self.study_of(name)
            prompts = study.prompts if study else []
            note += f" Prompt variants of the sweep: {', '.join(prompts)}."
        return note

    def model_info(self, name: str) -> dict:
        """Family and instruct flag of the models of the base-vs-instruct figure (Fig 12)."""
        if name != "fig12":
            return {}
        return {
            m: {"family": self.family_of(m), "instruct": bool(self.model(m).get("instruct"))}
            for m in self.figure_models(name)
        }

    def figure_params(self) -> dict:
        """Params of rule figure (what workflow/scripts/plot_figure.py reads)."""
        return {
            "kind": lambda wc: FIGURES[wc.figure][0],
            "run_keys": lambda wc: self.figure_run_keys(wc.figure),
            "models": lambda wc: self.figure_models(wc.figure),
            "datasets": lambda wc: self.artifact_datasets(wc.figure),
            "max_step": self.config["analyses"]["max_step"],
            "note": lambda wc: self.figure_note(wc.figure),
            "select": lambda wc: self.figure_select(wc.figure),
            "model_info": lambda wc: self.model_info(wc.figure),
        }

    def figure_category(self, name: str) -> str:
        return ALIGNMENT if FIGURES[name][1] in ("probes", "alignment") else MECHANISMS

    def figure_label(self, name: str) -> dict:
        # one label only: the report turns a second two-valued label into a toggle
        content = FIGURES[name][3]
        family = FAMILY_FIGURES.get(name)
        if family:
            content = f"{content} ({family})"
        return {"figure": f"Figure {name[3:]}: {content}"}

    def figure_names(self) -> list[str]:
        """Figures this experiment draws: those its studies list."""
        return [name for name in FIGURES if self.study_of(name) is not None]

    # --- explorer ----------------------------------------------------------------------------

    def explorer_cells(self) -> list[dict]:
        """Every traced run {dataset, model, prompt, testset} a study asks for: the runs whose
        traces an alignment method reads, and the cells of the trace-analysis studies."""
        from multilabel_llm.methods.estimators import TRACE_KINDS as ESTIMATOR_TRACE_KINDS

        cells = []
        for dataset in self.scored_datasets():
            for run in self.scored_runs(dataset):
                if self.method_kind(run["method"]) in ESTIMATOR_TRACE_KINDS:
                    cells.append(
                        {
                            "dataset": dataset,
                            "model": self.trace_model(run["method"], run["model"]),
                            "prompt": run["prompt"],
                            "testset": run["testset"],
                        }
                    )
        for study in self.studies.values():
            if study.kind in TRACE_KINDS:
                cells += study.trace_runs()
        unique = {tuple(c.values()): c for c in cells}
        return list(unique.values())

    def explorer_methods(self, wc) -> list[dict]:
        """The alignment runs shown beside a traced run: same dataset, prompt and test set, and
        the traced model is the one the method reads (its own for non-trace methods)."""
        if wc.dataset not in self.scored_datasets():
            return []
        return [
            {
                "method": run["method"],
                "model": run["model"],
                "display_name": self.method(run["method"]).get("display_name", run["method"]),
                "path": self.distribution(wc.dataset, run),
            }
            for run in self.scored_runs(wc.dataset)
            if run["prompt"] == wc.prompt
            and run["testset"] == wc.testset
            and self.trace_model(run["method"], run["model"]) == wc.model
        ]

    def explorer_inputs(self, wc) -> dict:
        methods = self.explorer_methods(wc)
        return {
            "traces": self.traces(wc.dataset, wc.model, wc.prompt, wc.testset),
            "examples": self.data(wc.dataset, "examples.parquet"),
            "meta": self.data(wc.dataset, "meta.json"),
            "dists": [m["path"] for m in methods],
            # the summary strip repeats the run's rows of the dataset's alignment table
            "alignment": ([f"{self.results}/tables/alignment_{wc.dataset}.csv"] if methods else []),
        }

    def explorer_pages(self) -> list[str]:
        return [
            f"{self.results}/explorer/{c['dataset']}/{c['model']}/{c['prompt']}/{c['testset']}.html"
            for c in self.explorer_cells()
        ]

    # --- report and targets ------------------------------------------------------------------

    @cached_property
    def report_tables(self) -> dict[str, dict]:
        """table -> how the report shows it: title, caption, subcategory, digits, pivot, columns."""
        return {
            "table1_datasets": dict(
                title="Table 1: annotation statistics and label distributions",
                caption=(
                    "Annotators (mean per example), agreement and the share of examples with "
                    "0, 1, 2 and 3+ aggregate labels, per dataset."
                ),
                subcategory="Datasets (§3)",
            ),
            "table4_second_never": dict(
                title="Table 4: second-highest label never predicted later (%)",
                caption=(
                    "Among intermediate generation steps whose second-highest label is not "
                    "predicted at the next step, the % where it is not predicted at any later "
                    "step."
                ),
                subcategory=MECHANISMS,
                digits=1,
                pivot=dict(index="dataset", columns="model", values="pct_never"),
            ),
            "second_next": dict(
                title="Second-highest label predicted next (%)",
                caption=(
                    "Per generation step r (and over all intermediate steps, 'all'): the % of "
                    "cases the second-highest label at r is the label predicted at r+1 (the "
                    "numbers of Fig. 3)."
                ),
                subcategory=MECHANISMS,
                digits=1,
            ),
            "table6_attention": dict(
                title="Table 6: average attention (%) to input and label tokens",
                caption=(
                    "Average per-token attention (%) from the first token of the second and "
                    "later labels to the input, to the label tokens, and to the labels' first "
                    "tokens (pct_per_token_*), and the cumulative share of attention (share_*). "
                    "Empty when no model was run with attention capture "
                    "(analyses.attention_models)."
                ),
                subcategory=MECHANISMS,
                digits=3,
            ),
            "table7_label_order": dict(
                title="Table 7: outputs following alphabetical / prompt label order (%)",
                caption=(
                    "Share of multi-label outputs whose labels appear in alphabetical order and "
                    "in the order the instruction lists them, per label-order setting, pooled "
                    "over models, datasets and seeds; '–' where prompt order is alphabetical."
                ),
                subcategory=MECHANISMS,
                digits=1,
            ),
            **{
                f"alignment_{d}": dict(
                    title=f"Tables 2/5: distribution alignment on {d}",
                    caption=(
                        "NLL, L1 and example-F1 between LLM-derived and human distributions per "
                        "model and method (Table 2: the large instruct model; Table 5: the "
                        "smaller one)."
                    ),
                    subcategory=ALIGNMENT,
                    digits=2,
                    columns=ALIGNMENT_COLUMNS,
                )
                for d in self.datasets
            },
            # Tables 2/5 as rules/metrics.smk lays them out
            **{
                name: dict(
                    title=PAPER_TABLE_TITLES.get(name, name),
                    caption=(
                        "NLL, L1 and example-F1 between LLM-derived and human distributions, "
                        "laid out as in the paper (rows: methods; columns: datasets × metrics)."
                    ),
                    subcategory=ALIGNMENT,
                    digits=2,
                )
                for name in self.paper_alignment_tables
            },
            "binary_position_bias": BINARY_BIAS_TABLE,
        }

    def report_table_names(self) -> list[str]:
        """Table 1, and each table some study of the experiment lists."""
        names = ["table1_datasets"]
        names += [t for t, (artifact, *_) in MECHANISM_TABLES.items() if self.study_of(artifact)]
        names += [f"alignment_{d}" for d in self.scored_datasets()]
        names += list(self.paper_alignment_tables)
        if self.binary_bias_cells():
            names.append("binary_position_bias")
        return names

    def report_targets(self) -> list[str]:
        """Everything the HTML report shows."""
        r = self.results
        return (
            [f"{r}/figures/{name}.png" for name in self.figure_names()]
            + [f"{r}/report/tables/{name}.html" for name in self.report_table_names()]
            + [f"{r}/tables/paper_comparison.html"]
            + self.explorer_pages()
        )

    def paper_reference_files(self) -> list[str]:
        """The paper's own numbers, shipped with the workflow (data/paper_reference/)."""
        return sorted(str(p) for p in (self.basedir / "data" / "paper_reference").glob("*.csv"))

    def paper_comparison_inputs(self) -> dict[str, str]:
        """{paper table: produced CSV} for every paper table this experiment produces; keys as
        in multilabel_llm.report.paper_reference.TABLES."""
        tables = {"table1": f"{self.results}/tables/table1_datasets.csv"}
        for name in self.paper_alignment_tables:  # roles.table2 / roles.table5
            tables[name] = f"{self.results}/tables/{name}.csv"
        # the mechanism tables exist when a study of the experiment lists them
        for table, (artifact, *_) in MECHANISM_TABLES.items():
            if artifact in ("table4", "table6", "table7") and self.study_of(artifact):
                tables[artifact] = f"{self.results}/tables/{table}.csv"
        return tables

    def paper_comparison_datasets(self) -> dict:
        """Dataset slot -> the names the comparison maps onto the paper's datasets."""
        return {
            d: {
                "name": self.dataset(d).get("name", d),
                "display_name": self.dataset(d).get("display_name"),
            }
            for d in self.datasets
        }

    def paper_comparison_models(self) -> dict:
        """Model slot -> the ids the comparison maps onto the paper's models (Tables 4, 6)."""
        return {
            m: {"hf_id": self.model(m).get("hf_id"), "name": self.model(m).get("name")}
            for m in self.models
        }

    def final_outputs(self) -> list[str]:
        """The default target: every table (CSV/MD/TeX) and everything the report shows."""
        r = self.results
        return [
            f"{r}/tables/table1_datasets.csv",
            *[t for d in self.alignment_tables() for t in _exts(d, ("csv", "md", "tex"))],
            *[t for d in self.token_level_tables() for t in _exts(d, ("csv", "md"))],
            *[
                f"{r}/tables/{table}.{ext}"
                for table in self.paper_alignment_tables
                for ext in ("csv", "md", "tex")
            ],
            # the long-format table of every score (Tables 2/5 are a view of it)
            *([f"{r}/tables/results_long.csv"] if self.scored_datasets() else []),
            *self.report_targets(),
            *[f"{r}/tables/paper_comparison.{ext}" for ext in ("csv", "md", "html")],
        ]


def _exts(csv: str, exts: tuple[str, ...]) -> list[str]:
    stem = csv.removesuffix(".csv")
    return [f"{stem}.{ext}" for ext in exts]


def file_digest(path: str | Path, memo: dict | None = None) -> str:
    """sha256 of a file's content. ``memo`` (path -> (stat key, digest)) skips rereading a file
    whose size, mtime, ctime and inode are unchanged: an edit that keeps the mtime (cp -p,
    rsync -t, touch -r) still moves the ctime, which no user command can set back."""
    import hashlib

    info = os.stat(path)
    key = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
    if memo is not None and memo.get(str(path), (None,))[0] == key:
        return memo[str(path)][1]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = f"sha256:{digest.hexdigest()}"
    if memo is not None:
        memo[str(path)] = (key, value)
    return value


def write_decision(path: str | Path, content: dict) -> bool:
    """Write ``content`` as JSON at ``path`` unless the file already holds exactly it (its mtime
    then stays, so nothing reruns); True when written."""
    import json

    from multilabel_llm.core.io import write_text

    text = json.dumps(content, sort_keys=True, indent=1, default=str) + "\n"
    try:
        if Path(path).read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_text(path, text)
    return True
