"""Partial reruns: a table target computes only its ancestors; after a finished run, changing a
method's parameter (a --config override) reruns that method and its tables, never inference.

Runs the tiny ``slurm_test`` experiment (bundled SmolLM2 in two model slots, 6 examples)
locally in a scratch working directory, then inspects ``snakemake -n`` plans.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = "results/slurm_test/tables/alignment_goemotions.csv"  # the experiment's own folder
MODELS = ("smollm2", "smollm2-as-70b")
RUN = "goemotions_{model}_json10_main_test_set"


def snakemake(workdir: Path, *args: str, config: tuple[str, ...] = ()) -> str:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--config",
        "experiment=slurm_test",
        *config,
        "--cores",
        "2",
        *args,
    ]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def planned(dry_run: str) -> Counter:
    """(rule, "_"-joined wildcard values) -> count, for every job of a dry run."""
    jobs: Counter = Counter()
    rule = None
    for line in dry_run.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):$", line)
        if m:
            if rule:
                jobs[(rule, "")] += 1
            rule = m.group(1)
            continue
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and rule:
            values = [kv.split("=", 1)[1] for kv in m.group(1).split(", ")]
            jobs[(rule, "_".join(values))] += 1
            rule = None
    if rule:
        jobs[(rule, "")] += 1
    return jobs


def rules_of(jobs: Counter) -> Counter:
    return Counter(rule for rule, _ in jobs.elements())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("reruns")
    (wd / "data").symlink_to(ROOT / "data")
    return wd


@pytest.fixture(scope="module")
def finished(workdir):
    """The alignment table computed once, from scratch."""
    snakemake(workdir, TABLE)
    assert (workdir / TABLE).is_file()
    return workdir


def test_planned_parser():
    text = (
        "rule estimate:\n    input: a\n    wildcards: dataset=d, model=m, method=x\n"
        "localrule all:\n    input: b\n"
    )
    assert planned(text) == Counter({("estimate", "d_m_x"): 1, ("all", ""): 1})


@pytest.mark.slow
def test_table_target_plans_only_its_ancestors(workdir):
    # Run first in the module: the scratch directory is still empty.
    assert not (workdir / "results").exists()
    jobs = planned(snakemake(workdir, "-n", TABLE))
    # 1 dataset, 1 test set, 2 model slots, 1 prompt, 3 methods (hand count of slurm_test):
    assert rules_of(jobs) == Counter(
        {
            "prepare_dataset": 1,
            "build_testsets": 1,
            "demo_pool": 1,  # the dataset's shared demonstrations
            "engine_service": 2,  # one loaded model per (dataset, model slot, engine)
            "extract_traces": 2,
            "score_breakdown": 2,  # unary_breakdown needs the unary breakdown scores
            "estimate": 6,  # 2 models x 3 methods
            "score_alignment": 1,
        }
    )
    # The dataset-statistics table needs the prepared data only: no inference at all.
    jobs = planned(snakemake(workdir, "-n", "results/slurm_test/tables/table1_datasets.csv"))
    assert set(rules_of(jobs)) == {"prepare_dataset", "dataset_stats"}


@pytest.mark.slow
def test_finished_target_has_nothing_to_do(finished):
    out = snakemake(finished, "-n", TABLE)
    assert planned(out) == Counter()
    assert "Nothing to be done" in out


@pytest.mark.slow
def test_method_parameter_change_reruns_only_that_method_and_its_table(finished):
    # Snakemake's --config accepts no dotted keys; a nested mapping is merged by Hydra.
    change = ("methods={unary_breakdown: {params: {single_label_norm: softmax}}}",)
    jobs = planned(snakemake(finished, "-n", TABLE, config=change))
    expected = Counter(
        {("estimate", RUN.format(model=m) + "_unary_breakdown"): 1 for m in MODELS}
        | {("score_alignment", "goemotions"): 1}
    )
    assert jobs == expected


@pytest.mark.slow
def test_prompt_change_reruns_inference_of_that_prompt_only(finished):
    """The converse: a prompt parameter does change the traces (and everything after)."""
    change = ("prompts={json10: {label_order: alphabetical}}",)
    jobs = planned(snakemake(finished, "-n", TABLE, config=change))
    assert rules_of(jobs)["extract_traces"] == 2
    # one engine service per model serves them; breakdown prompts have their own demos, but
    # Snakemake reruns every client of a service that runs: the breakdown jobs run again in
    # it and reuse their fingerprinted shard (tests/engine/test_engine_service.py)
    assert rules_of(jobs)["engine_service"] == 2
    assert rules_of(jobs)["score_breakdown"] <= 2
    assert "prepare_dataset" not in rules_of(jobs)
    assert "build_testsets" not in rules_of(jobs)
