"""The studies table of an experiment (docs/studies.md), optionally with each study's job count.

``python -m multilabel_llm.workflow.study_table --experiment paper --jobs`` prints one Markdown
row per study (:func:`multilabel_llm.workflow.studies.grid_summary`) and the jobs of a
``snakemake -n`` with only that study kept. It sits above both the config and the studies
(the config validates studies; the studies never load a config).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

from multilabel_llm.workflow.config import REPO_ROOT, load_config
from multilabel_llm.workflow.studies import grid_summary, resolve_studies


def study_job_counts(experiment: str, studies: list[str], snakefile=None) -> dict[str, int]:
    """Jobs of a ``snakemake -n`` of the experiment with only that study kept (shared jobs such
    as dataset preparation counted in each), plus "all" for the whole experiment."""
    root = REPO_ROOT
    snakefile = snakefile or root / "Snakefile"

    def count(overrides: list[str]) -> int:
        cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(snakefile), "-d", str(root)]
        cmd += ["--config", f"experiment={experiment}"]
        if overrides:
            cmd.append("overrides=" + " ".join(overrides))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        totals = re.findall(r"^total\s+(\d+)$", proc.stdout, re.M)
        return int(totals[-1]) if totals else 0

    counts = {"all": count([])}
    for name in studies:
        counts[name] = count([f"~studies.{other}" for other in studies if other != name])
    return counts


def main(argv=None) -> None:
    """``python -m multilabel_llm.workflow.study_table --experiment paper [--jobs]``: the
    studies table."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--experiment", default="paper")
    parser.add_argument("--jobs", action="store_true", help="also dry-run each study alone")
    args = parser.parse_args(argv)
    cfg = load_config({"experiment": args.experiment})
    studies = resolve_studies(cfg)
    rows = grid_summary(cfg, studies)
    jobs = study_job_counts(args.experiment, list(studies)) if args.jobs else {}
    head = ["study", "artifacts", "models", "datasets", "prompts", "testsets", "cells"]
    head += ["jobs alone"] if jobs else []
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [str(row[k]) for k in head if k in row]
        if jobs:
            cells.append(str(jobs[row["study"]]))
        print("| " + " | ".join(cells) + " |")
    if jobs:
        print(f"\nWhole experiment: {jobs['all']} jobs (shared jobs counted once).")


if __name__ == "__main__":
    main()
