"""The ``multilabel-llm`` command: trace a tiny model, score methods, plan; clear input errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from multilabel_llm.cli import main
from multilabel_llm.data.canonical import save_canonical
from tests.builders import TOY_PROMPT_CFG, save_tiny_checkpoint, toy_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A prepared toy dataset dir, a tiny random Llama checkpoint and a prompt, as files."""
    tmp = tmp_path_factory.mktemp("cli")
    save_canonical(toy_dataset(), tmp / "data")
    model_cfg = save_tiny_checkpoint(tmp / "model")
    model_cfg["dtype"] = "float32"
    (tmp / "model.yaml").write_text(yaml.safe_dump(model_cfg))
    (tmp / "prompt.yaml").write_text(yaml.safe_dump(TOY_PROMPT_CFG))
    (tmp / "ids.txt").write_text("q0\nq2\nq5\n")
    return tmp


@pytest.fixture(scope="module")
def traced(inputs):
    out = inputs / "run" / "traces.jsonl.gz"
    argv = ["trace", "--data", str(inputs / "data"), "--model", str(inputs / "model.yaml")]
    argv += ["--prompt", str(inputs / "prompt.yaml"), "--ids", str(inputs / "ids.txt")]
    assert main([*argv, "--out", str(out), "--threads", "1"]) == 0
    return out


def test_trace_writes_traces_pandas_can_read(traced):
    frame = pd.read_json(traced, lines=True)  # one row per trace; the meta is in a sidecar
    assert frame["id"].astype(str).tolist() == ["q0", "q2", "q5"]
    assert (traced.parent / "traces.meta.json").is_file()


def test_score_estimates_methods_and_scores_distributions(inputs, traced, tmp_path):
    out = tmp_path / "scores.csv"
    argv = ["score", "--data", str(inputs / "data"), "--traces", str(traced)]
    argv += ["--method", "compare_to_none", "--method", "hard_predictions"]
    argv += ["--method", "max_over_generations", "--bootstrap-n", "20", "--out", str(out)]
    assert main(argv) == 0
    table = pd.read_csv(out)
    assert table["method"].tolist() == [
        "compare_to_none",
        "hard_predictions",
        "max_over_generations",
    ]
    for metric in ("nll", "l1", "example_f1"):
        assert table[metric].notna().all()
        assert (table[f"{metric}_ci_low"] <= table[metric] + 1e-12).all()
    assert (table["n_examples"] == 3).all()
    # a distribution file scores the same as the method it holds
    from multilabel_llm.core.traces import read_traces
    from multilabel_llm.methods.estimators import estimate

    dataset_ids = ["q0", "q2", "q5"]
    labels = toy_dataset().labels
    dist = estimate("hard_predictions", {}, dataset_ids, labels, True, traces=read_traces(traced))
    dist.to_parquet(tmp_path / "hard.parquet")
    out2 = tmp_path / "dist.csv"
    argv = ["score", "--data", str(inputs / "data"), "--ids", str(inputs / "ids.txt")]
    argv += ["--dist", f"hard={tmp_path / 'hard.parquet'}", "--bootstrap-n", "20"]
    assert main([*argv, "--out", str(out2)]) == 0
    assert pd.read_csv(out2)["n_examples"].tolist() == [3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "trace",
                "--data",
                "/no/such/dir",
                "--model",
                "m",
                "--prompt",
                "p",
                "--out",
                "t.jsonl.gz",
            ],
            "--data: /no/such/dir lacks examples.parquet",
        ),
        (
            [
                "trace",
                "--data",
                "{data}",
                "--split",
                "dev",
                "--model",
                "missing.yaml",
                "--prompt",
                "p",
                "--out",
                "t.jsonl.gz",
            ],
            "--model: file missing.yaml does not exist",
        ),
        (
            [
                "trace",
                "--data",
                "{data}",
                "--split",
                "nosuch",
                "--model",
                "m",
                "--prompt",
                "p",
                "--out",
                "t.jsonl.gz",
            ],
            "--split: 'nosuch' is not a split",
        ),
        (
            ["score", "--data", "{data}", "--traces", "/no/traces.jsonl.gz", "--method", "x"],
            "--traces: file /no/traces.jsonl.gz does not exist",
        ),
        (
            ["score", "--data", "{data}", "--ids", "{ids}", "--dist", "oops"],
            "--dist: 'oops'; expected NAME=FILE.parquet",
        ),
        (["score", "--data", "{data}"], "give what to score"),
    ],
)
def test_bad_input_names_the_flag(inputs, capsys, argv, message):
    argv = [a.format(data=inputs / "data", ids=inputs / "ids.txt") for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_method_lists_slots_and_kinds(inputs, traced, capsys):
    argv = ["score", "--data", str(inputs / "data"), "--traces", str(traced)]
    assert main([*argv, "--method", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "--method: 'nosuch' is neither a method slot of experiment 'demo'" in err
    assert "hard_predictions" in err


def test_plan_wraps_cluster_plan(tmp_path, capsys):
    from tests.workflow.test_cluster_plan import DRY_RUN

    (tmp_path / "dry.txt").write_text(DRY_RUN)
    assert main(["plan", str(tmp_path / "dry.txt"), "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "extract_traces_hidden" in out and "score_breakdown" in out


def test_plan_without_the_workflow_extra_says_what_to_install(monkeypatch, capsys):
    import multilabel_llm.cli as cli

    real = cli.importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util, "find_spec", lambda name: None if "snakemake" in name else real(name)
    )
    assert main(["plan", "--experiment", "paper"]) == 2
    assert "pip install -e '.[workflow]'" in capsys.readouterr().err


def test_console_script_runs():
    """``python -m multilabel_llm.cli`` is what the ``multilabel-llm`` entry point runs."""
    done = subprocess.run(
        [sys.executable, "-m", "multilabel_llm.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "trace" in done.stdout and "score" in done.stdout and "plan" in done.stdout


# --- issue 26, items 7 and 8: traces of another dataset, a cut-short trace file ------------------


def test_score_traces_of_another_dataset_says_so(inputs, traced, tmp_path, capsys):
    from multilabel_llm.data.canonical import load_canonical

    other = load_canonical(inputs / "data")
    other.examples["id"] = "r" + other.examples["id"].str[1:]  # same labels, other ids
    save_canonical(other, tmp_path / "other")
    argv = ["score", "--data", str(tmp_path / "other"), "--traces", str(traced)]
    assert main([*argv, "--method", "compare_to_none"]) == 2
    err = capsys.readouterr().err
    assert "3 of the 3 examples of" in err and "are not in dataset" in err
    assert "KeyError" not in err


def test_score_cut_short_traces_names_the_file(inputs, traced, tmp_path, capsys):
    cut = tmp_path / "traces.jsonl.gz"
    cut.write_bytes(traced.read_bytes()[:-40])
    (tmp_path / "traces.meta.json").write_bytes((traced.parent / "traces.meta.json").read_bytes())
    argv = ["score", "--data", str(inputs / "data"), "--traces", str(cut)]
    assert main([*argv, "--method", "compare_to_none"]) == 2
    assert f"--traces: {cut} ends before its compressed stream does" in capsys.readouterr().err
