"""The grid's shared core: what every stage of ``WorkflowDag`` reads.

``DagCore`` holds the constructor, the config slots (``{model}-sft`` slots synthesised), the
cells the experiment's studies ask for, the paths of the files several stages share, and the
decision files (``decided``). Each stage module of this package subclasses it and imports
nothing else of the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from multilabel_llm.core.io import write_text
from multilabel_llm.workflow.config import ConfigError, load_config
from multilabel_llm.workflow.studies import (
    SFT_SUFFIX,
    Study,
    StudyError,
    alignment_runs,
    artifact_owner,
    mechanism_cells,
    paper_tables,
    resolve_studies,
)

# report subcategories of the mechanism and alignment sides (figures and tables)
MECHANISMS = "Mechanisms (§4, §D)"
ALIGNMENT = "Alignment (§5, §D)"


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


def wildcard_dict(wc) -> dict[str, str]:
    """Snakemake's wildcards (a Namedlist), a dict or a namespace, as a plain dict."""
    if isinstance(wc, dict):
        return dict(wc)
    if hasattr(wc, "items"):
        return dict(wc.items())
    return dict(vars(wc))


_Dag = TypeVar("_Dag", bound="DagCore")


class DagCore:
    """The config, its studies and the shared paths of the experiment's grid."""

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
        self._decided_written: set[str] = set()
        self._digests: dict = {}

    @classmethod
    def compose(cls: type[_Dag], snakemake_config: dict, basedir: str | Path = ".") -> _Dag:
        """The grid of ``snakemake --config`` values: the composed, validated Hydra config
        (multilabel_llm.workflow.config.load_config) and its studies; any config error is a
        DagError."""
        try:
            config = load_config(snakemake_config)
            # the experiment's studies: which cells of the grid each table and figure needs
            return cls(config, resolve_studies(config), basedir)
        except (ConfigError, StudyError) as err:
            raise DagError(str(err)) from None

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

    # --- the cells the studies ask for -------------------------------------------------------

    def study_of(self, artifact: str) -> Study | None:
        """The study producing ``artifact`` (table4, fig2, …), or None when none lists it."""
        return artifact_owner(self.studies, artifact)

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

    @cached_property
    def paper_alignment_tables(self) -> dict[str, dict]:
        """table2 / table5 -> {model, prompt, testset} (roles + the alignment study)."""
        return paper_tables(self.config, self.studies)

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

    # --- paths several stages share ----------------------------------------------------------

    def data(self, dataset: str, name: str) -> str:
        """A file of the prepared dataset: examples.parquet, meta.json, demo_pool.txt."""
        return f"{self.results}/data/{dataset}/{name}"

    def testset_ids(self, dataset: str, testset: str) -> str:
        return f"{self.results}/data/{dataset}/testsets/{testset}.txt"

    def traces(self, dataset: str, model: str, prompt: str, testset: str) -> str:
        return f"{self.results}/traces/{dataset}/{model}/{prompt}/{testset}/traces.jsonl.gz"

    def distribution(self, dataset: str, run: dict) -> str:
        return (
            f"{self.results}/distributions/{dataset}/{run['model']}/{run['prompt']}/"
            f"{run['testset']}/{run['method']}.parquet"
        )

    def analysis_csv(self, name: str, cell: dict) -> str:
        return (
            f"{self.results}/analyses/{cell['dataset']}/{cell['model']}/{cell['prompt']}/"
            f"{cell['testset']}/{name}.csv"
        )

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


def file_digest(path: str | Path, memo: dict | None = None) -> str:
    """sha256 of a file's content. ``memo`` (path -> (stat key, digest)) skips rereading a file
    whose size, mtime, ctime and inode are unchanged: an edit that keeps the mtime (cp -p,
    rsync -t, touch -r) still moves the ctime, which no user command can set back."""
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
    text = json.dumps(content, sort_keys=True, indent=1, default=str) + "\n"
    try:
        if Path(path).read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_text(path, text)
    return True
