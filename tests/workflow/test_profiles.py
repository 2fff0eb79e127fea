"""The Snakemake profiles do what they say: each setting lives in the profile it applies to.

Snakemake loads profiles/default/ as the workflow profile on every run, also next to
``--profile profiles/slurm``, and the workflow profile's values win. These tests read the
settings through Snakemake's own argument parser, so they follow its precedence.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"


def _profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "profile.yaml").read_text(encoding="utf-8")) or {}


def _effective_args(*argv: str):
    from snakemake.cli import parse_args

    _, args = parse_args([*argv, "-n"])
    return args


@pytest.fixture()
def in_repo(monkeypatch):
    # the workflow profile is found relative to the working directory (and the Snakefile)
    monkeypatch.chdir(ROOT)


def test_slurm_profile_keeps_its_latency_wait(in_repo):
    args = _effective_args("--profile", "profiles/slurm")
    assert args.latency_wait == _profile("slurm")["latency-wait"] == 60
    assert args.executor == "slurm"
    # the workflow profile's settings still apply
    assert args.rerun_incomplete and args.show_failed_logs and args.printshellcmds
    assert args.scheduler == "greedy"


def test_local_runs_get_the_workflow_profile(in_repo):
    args = _effective_args()
    assert args.scheduler == "greedy" and args.rerun_incomplete
    assert args.executor in (None, "local")


def test_workflow_profile_sets_nothing_the_cluster_profile_sets():
    # a key in both would be silently taken from the workflow profile on the cluster
    shared = sorted(set(_profile("default")) & set(_profile("slurm")))
    assert shared == [], f"set in both profiles/default and profiles/slurm: {shared}"
