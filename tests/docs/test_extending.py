"""docs/extending.md, followed: each recipe's blocks applied to a copy of the repository, its
commands run there, and the extension checked end to end at library level in a subprocess that
imports the copy. A block that no longer applies (a diff whose context moved) or an example
that stops working fails here, so the recipes cannot drift from the code.

Block markers: ``<!-- recipe: NAME PATH -->`` before a fenced block (``diff``: an edit whose
context and removed lines must occur once in PATH; any other language: PATH is written whole)
and ``<!-- recipe: NAME run -->`` before a ``bash`` block run from the copy's root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "extending.md"
# what a recipe may touch or read; copied fresh for each recipe
COPIED = ("src", "config", "workflow", "rules", "docs", "pyproject.toml")
RECIPES = ("method-kind", "dataset-loader", "figure", "backend")

BLOCK = re.compile(
    r"<!-- recipe: (?P<recipe>[\w-]+) (?P<target>\S+) -->\n"
    r"```(?P<lang>[\w-]*)\n(?P<body>.*?)\n```\n",
    re.S,
)


@dataclass(frozen=True)
class Step:
    recipe: str
    target: str  # a path relative to the repository root, or "run"
    lang: str
    body: str


def steps(recipe: str | None = None) -> list[Step]:
    text = DOC.read_text(encoding="utf-8")
    found = [Step(m["recipe"], m["target"], m["lang"], m["body"]) for m in BLOCK.finditer(text)]
    return [s for s in found if recipe in (None, s.recipe)]


def apply_diff(text: str, body: str, where: str) -> str:
    """``text`` with the diff ``body`` applied: its context and ``-`` lines, in order, must
    occur exactly once (whole lines) and become its context and ``+`` lines."""
    old, new = [], []
    for line in body.split("\n"):
        tag, rest = line[:1], line[1:]
        if tag not in ("", " ", "-", "+"):
            raise AssertionError(f"{where}: diff line {line!r} starts with neither ' ', - nor +")
        if tag != "+":
            old.append(rest)
        if tag != "-":
            new.append(rest)
    assert any(old), f"{where}: a diff needs a context or removed line to find its place"
    padded, before, after = "\n" + text, "\n" + "\n".join(old) + "\n", "\n".join(new) + "\n"
    count = padded.count(before)
    assert count == 1, (
        f"{where}: the diff's context and removed lines occur {count} times in the file, "
        f"not once:\n{before}"
    )
    return padded.replace(before, "\n" + after, 1)[1:]


def subprocess_env(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MULTILABEL_LLM_CONFIG_PATH"}
    env.update(
        # the copy's package first; the checkout's root for tests.builders
        PYTHONPATH=os.pathsep.join([str(copy / "src"), str(ROOT)]),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
        # the bundled model's converted tokenizer, shared with the checkout
        MULTILABEL_LLM_CACHE=str(ROOT / "resources" / "models"),
    )
    return env


def follow(recipe: str, tmp_path: Path) -> Path:
    """A copy of the repository with ``recipe``'s blocks applied and its commands run."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    for step in steps(recipe):
        where = f"docs/extending.md, recipe {recipe}, block for {step.target}"
        if step.target == "run":
            assert step.lang == "bash", f"{where}: a run block is bash"
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", step.body],
                cwd=copy,
                env=subprocess_env(copy),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{where}: {step.body}\n{done.stdout}\n{done.stderr}"
            continue
        path = copy / step.target
        if step.lang == "diff":
            assert path.is_file(), f"{where}: no such file to edit"
            path.write_text(apply_diff(path.read_text(encoding="utf-8"), step.body, where))
        else:
            assert not path.exists(), f"{where}: the file exists already; a new file was meant"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(step.body + "\n", encoding="utf-8")
    return copy


# Every check starts by making sure it imports the copy, not the checked-out package.
PREAMBLE = """
import sys
from pathlib import Path

import multilabel_llm

COPY = Path.cwd().resolve()
ROOT = Path(sys.argv[1])
assert Path(multilabel_llm.__file__).resolve().is_relative_to(COPY / "src"), (
    f"imported {multilabel_llm.__file__}, not the copy's package"
)


def toy_traces():
    import gzip
    import shutil

    path = COPY / "toy.jsonl.gz"
    with open(ROOT / "tests/fixtures/traces/toy.jsonl", "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path
"""


def check(copy: Path, code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PREAMBLE + textwrap.dedent(code), str(ROOT)],
        cwd=copy,
        env=subprocess_env(copy),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-6000:]}"


def lint(copy: Path, recipe: str) -> None:
    """The recipe's new Python files pass the house's ruff rules, and the copy keeps the
    import layers and contracts of pyproject.toml (``lint-imports``, as in make test)."""
    tools = Path(sys.executable).parent
    new = [s.target for s in steps(recipe) if s.lang == "python"]
    for command in (
        [tools / "ruff", "check", "--no-fix", *new],
        [tools / "ruff", "format", "--check", *new],
        [tools / "lint-imports", "--no-cache"],
    ):
        done = subprocess.run(
            [str(c) for c in command],
            cwd=copy,
            env=subprocess_env(copy),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command[1:]}:\n{done.stdout}\n{done.stderr}"


def test_every_block_belongs_to_a_recipe():
    text = DOC.read_text(encoding="utf-8")
    markers = re.findall(r"^<!-- recipe:.*", text, re.M)
    assert len(markers) == len(steps()), f"a marker not right before a fenced block: {markers}"
    assert {s.recipe for s in steps()} == set(RECIPES)
    assert all(s.target == "run" or not Path(s.target).is_absolute() for s in steps())


def test_method_kind(tmp_path):
    copy = follow("method-kind", tmp_path)
    lint(copy, "method-kind")
    check(
        copy,
        """
        import json
        from types import SimpleNamespace as W

        import numpy as np
        import pandas as pd

        from multilabel_llm.core.traces import read_traces
        from multilabel_llm.methods.estimators import estimate
        from multilabel_llm.methods.jobs import estimate_method
        from multilabel_llm.methods.registry import TRACE_METHOD_KINDS
        from multilabel_llm.methods.registry import main as registry_check
        from multilabel_llm.workflow.config import ConfigError, load_config
        from multilabel_llm.workflow.dag import WorkflowDag
        from multilabel_llm.workflow.studies import resolve_studies

        # the generated schema and docs blocks are current, and name the kind
        assert registry_check([]) == 0
        assert "| `first_step` | `estimate` | traces |" in (COPY / "docs/metrics.md").read_text()
        assert "first_step" in TRACE_METHOD_KINDS

        # an experiment takes a slot of the kind; its params are checked by the schema
        add = "+method@methods.first_step=first_step"
        cfg = load_config({"overrides": add})
        assert cfg["methods"]["first_step"]["kind"] == "first_step"
        try:
            load_config({"overrides": f"{add} methods.first_step.params.floor=0.7"})
            raise AssertionError("floor 0.7 was accepted")
        except ConfigError as err:
            assert "methods.first_step.params.floor" in str(err), err

        # the DAG: rule estimate writes it from the run's traces, the alignment tables score it
        dag = WorkflowDag(cfg, resolve_studies(cfg))
        assert "first_step" in dag.methods_written_by("estimate").split("|")
        cell = ("goemotions", "smollm2", "json10", "main_test_set")
        assert dag.method_kind_inputs("first_step", *cell) == {"traces": dag.traces(*cell)}
        dists = dag.scoring_inputs(W(dataset="goemotions"))["dists"]
        assert dag.distribution("goemotions", dict(zip(
            ("model", "prompt", "testset", "method"), (*cell[1:], "first_step")
        ))) in dists

        # rule estimate's front end on the hand-built traces (tests/fixtures/traces/README.md)
        labels, ids = ["anger", "joy", "sadness"], ["a", "b", "c", "d", "e"]
        (COPY / "meta.json").write_text(json.dumps({"labels": labels, "multilabel": True}))
        (COPY / "ids.txt").write_text("\\n".join(ids) + "\\n")
        inputs = {"meta": COPY / "meta.json", "ids": COPY / "ids.txt", "traces": toy_traces()}
        params = cfg["methods"]["first_step"]["params"]
        estimate_method("first_step", params, inputs, COPY / "first_step.parquet", "first_step")
        frame = pd.read_parquet(COPY / "first_step.parquet")
        first_steps = [[.2, .7, .05], [.15, .8, .03], [.95, .02, .02], [.3, .5, .15], [0, 0, 0]]
        np.testing.assert_allclose(frame[labels].to_numpy(), first_steps)
        single = estimate(
            "first_step", {}, ids, labels, False, traces=read_traces(inputs["traces"])
        )
        np.testing.assert_allclose(single[labels].sum(axis=1), 1.0)
        """,
    )


def test_dataset_loader(tmp_path):
    copy = follow("dataset-loader", tmp_path)
    lint(copy, "dataset-loader")
    check(
        copy,
        """
        import jsonschema
        import numpy as np
        import yaml

        from multilabel_llm.data import input_files, load_canonical, prepare, save_canonical
        from multilabel_llm.data.testsets import build_testset, get_testset_cfg
        from multilabel_llm.workflow.config import SCHEMA_DIR, compose

        # the config is found in its group and the dataset schema accepts it
        cfg = compose(overrides=["+dataset@datasets.onehot=onehot_example"])
        entry = cfg["datasets"]["onehot"]
        schema = yaml.safe_load((SCHEMA_DIR / "dataset.schema.yaml").read_text())
        problems = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(entry)]
        assert not problems, problems
        assert input_files(entry, COPY) == ["data/onehot/example.csv"]

        # rule prepare_dataset's call: labels, splits, aggregate and human distribution
        ds = prepare(entry, COPY)
        assert ds.labels == ["joy", "anger", "fear"] and ds.multilabel and ds.has_annotators
        ex = ds.examples.set_index("id")
        assert ex["split"].to_dict() == {"e1": "train", "e2": "train", "e3": "test", "e4": "test"}
        assert ex["labels"].map(list).to_dict() == {
            "e1": ["joy"], "e2": ["anger", "fear"], "e3": ["fear"], "e4": ["joy"]
        }
        assert ex["n_annotators"].to_dict() == {"e1": 2, "e2": 2, "e3": 3, "e4": 2}
        human = ds.human_distribution()
        np.testing.assert_allclose(human.loc["e3"], [0, 1 / 3, 1])
        np.testing.assert_allclose(human.loc["e4"], [0.5, 0, 0])
        save_canonical(ds, COPY / "prepared")
        assert load_canonical(COPY / "prepared").labels == ds.labels
        testset = build_testset(ds, "main_test_set", get_testset_cfg(entry, "main_test_set"))
        assert sorted(testset) == ["e3", "e4"]
        """,
    )


def test_figure(tmp_path):
    copy = follow("figure", tmp_path)
    lint(copy, "figure")
    check(
        copy,
        """
        from types import SimpleNamespace as W

        import jinja2
        from PIL import Image

        from multilabel_llm.analyses.run_tables import tag, trace_analyses
        from multilabel_llm.core.traces import read_traces
        from multilabel_llm.report.jobs import plot_figure
        from multilabel_llm.workflow.config import load_config
        from multilabel_llm.workflow.dag import WorkflowDag
        from multilabel_llm.workflow.studies import resolve_studies

        # the demo draws it, into the report, from the step_stats CSVs of its study's runs
        cfg = load_config({})
        dag = WorkflowDag(cfg, resolve_studies(cfg))
        assert "fig17" in dag.figure_names()
        assert f"{dag.results}/figures/fig17.png" in dag.report_targets()
        assert dag.figure_label("fig17") == {"figure": "Figure 17: labels per output"}
        wc = W(figure="fig17")
        inputs = dag.figure_inputs(wc)
        assert inputs and all(path.endswith("/step_stats.csv") for path in inputs)

        # those CSVs from the hand-built traces, as rule analyze_traces writes them
        meta, traces = read_traces(toy_traces())
        gold = {"a": ["joy", "sadness"], "b": ["sadness"], "c": ["anger"], "d": ["joy", "anger"]}
        steps = trace_analyses(traces, meta.labels, gold)["step_stats"]
        for path, keys in zip(inputs, dag.figure_run_keys("fig17"), strict=True):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tag(steps, **keys).to_csv(path, index=False)

        # rule figure's front end with the rule's params
        params = {k: v(wc) if callable(v) else v for k, v in dag.figure_params().items()}
        assert params["kind"] == "fig17"
        plot_figure(inputs, params, COPY / "fig17.png", COPY / "fig17.pdf")
        with Image.open(COPY / "fig17.png") as image:
            assert image.size[0] > 300 and image.size[1] > 200
        assert (COPY / "fig17.pdf").read_bytes()[:4] == b"%PDF"

        # its caption block in the report
        rst = (COPY / "workflow/report/figures.rst").read_text()
        smk = W(wildcards=W(figure="fig17"), params=W(note="NOTE", max_step=3))
        caption = jinja2.Template(rst).render(snakemake=smk)
        assert "**Figure 17.**" in caption and "NOTE" in caption
        """,
    )


def test_backend(tmp_path):
    copy = follow("backend", tmp_path)
    lint(copy, "backend")
    check(
        copy,
        """
        from types import SimpleNamespace as W

        from multilabel_llm.core.traces import read_traces
        from multilabel_llm.data.canonical import CanonicalDataset, save_canonical
        from multilabel_llm.engine.backend import backend_class, engine_for, rule_engine
        from multilabel_llm.engine.jobs import extract_traces_from_files
        from multilabel_llm.workflow.config import load_config
        from multilabel_llm.workflow.dag import WorkflowDag
        from multilabel_llm.workflow.studies import resolve_studies
        from tests.builders import toy_dataset

        # a model slot with backend: keywords validates and its jobs choose the backend
        cfg = load_config({"overrides": "+model@models.kw=keywords"})
        model = cfg["models"]["kw"]
        assert engine_for(model) == "keywords" == rule_engine("extract_traces", model)
        assert rule_engine("extract_traces_hidden", model) == "hf"  # a capability it lacks
        assert backend_class("keywords").__module__ == "multilabel_llm.engine.keywords"
        dag = WorkflowDag(cfg, resolve_studies(cfg))
        cell = W(dataset="goemotions", model="kw", prompt="json10", testset="main_test_set")
        address = dag.engine_service_input("extract_traces")(cell)
        assert address == [f"{dag.results}/engines/goemotions/kw/keywords.json"]
        assert "keywords" in dag.engine_names.split("|")  # rule engine_service's {engine}
        assert "engine=dag.engine_names" in (COPY / "rules/inference.smk").read_text()

        # rule extract_traces' front end loads it (Backend.load) and writes parsed traces
        toy = toy_dataset()
        examples = toy.examples.copy()
        examples.loc[examples["id"] == "q2", "text"] = "Such joy, and a little fear too."
        save_canonical(CanonicalDataset(toy.name, toy.labels, True, examples), COPY / "toy")
        ids = toy.split("dev")["id"].tolist()
        (COPY / "ids.txt").write_text("\\n".join(ids) + "\\n")
        out = COPY / "traces" / "traces.jsonl.gz"
        prompt = cfg["prompts"]["json10"]
        summary = extract_traces_from_files(COPY / "toy", COPY / "ids.txt", model, prompt, out)
        meta, traces = read_traces(out)
        assert summary["n"] == len(ids) and meta.info["engine"] == "keywords"
        assert [t.id for t in traces] == ids and all(t.parse_ok for t in traces)
        named = {t.id: t.pred_labels for t in traces}
        assert named == {i: (["joy", "fear"] if i == "q2" else []) for i in ids}, named
        q2 = next(t for t in traces if t.id == "q2")
        assert [s.label for s in q2.label_steps] == ["joy", "fear"]
        """,
    )
