"""The README's figures for the paper experiment, computed by the code that prints them.

The block between :data:`BEGIN` and :data:`END` in README.md is generated from the paper
experiment's dry run and ``make plan``'s cost plan (``multilabel_llm.workflow.cluster_plan``), run in a
scratch working directory (as in a fresh clone: no prepared data, no finished outputs)::

    python -m multilabel_llm.workflow.readme_numbers --write   # rewrite the README block
    python -m multilabel_llm.workflow.readme_numbers --check   # exit 1 when the README differs

``tests/workflow/test_readme_numbers.py`` runs the check, so the README cannot drift from the code.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

from multilabel_llm.workflow.cluster_plan import DEFAULT_PROFILE, cost_plan, run_dry_run
from multilabel_llm.workflow.config import REPO_ROOT, load_config
from multilabel_llm.workflow.dry_run_jobs import parse_dry_run

README = REPO_ROOT / "README.md"
BEGIN = "<!-- paper-plan:begin (python -m multilabel_llm.workflow.readme_numbers --write; do not edit) -->"
END = "<!-- paper-plan:end -->"
EXPERIMENT = "paper"
# a fresh clone's state: no outputs, no Snakemake records
SKIPPED = {"results", "logs", ".snakemake", ".git", ".venv", "resources"}


def paper_plan(experiment: str = EXPERIMENT) -> dict:
    """Job counts of the dry run and the cost plan's totals, as ``make plan`` computes them."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for entry in REPO_ROOT.iterdir():  # the checkout without its outputs
            if entry.name not in SKIPPED:
                (work / entry.name).symlink_to(entry)
        text = run_dry_run(experiment, "", str(DEFAULT_PROFILE), work)
        plan = cost_plan(text, load_config({"experiment": experiment}), workdir=work,
                         experiment=experiment)  # fmt: skip
        # the same experiment with every model-bound job loading its own model
        own = "engine_service=false"
        own_text = run_dry_run(experiment, own, str(DEFAULT_PROFILE), work)
        own_plan = cost_plan(own_text, load_config({"experiment": experiment, "overrides": own}),
                             workdir=work, experiment=experiment)  # fmt: skip
    rules = Counter(job.rule for job in parse_dry_run(text))
    return {
        "jobs": sum(rules.values()),
        "rules": dict(rules),
        "cluster_jobs": plan.total.get("jobs", 0),
        "submissions": plan.total.get("submissions", 0),
        "loads": inference_loads(plan),
        "loads_without_services": inference_loads(own_plan),
        "partitions": {p: dict(sums) for p, sums in plan.partitions.items()},
        "engines": {e: dict(sums) for e, sums in plan.engines.items()},
    }


def inference_loads(plan) -> dict[str, Counter]:
    """partition -> (dataset, model, engine) -> how many jobs load that model for inference
    (engine services and jobs that load their own; SFT training is not inference)."""
    loads: dict[str, Counter] = {}
    for row, cost in plan.jobs:
        if cost.loads and row["rule"] != "train_sft":
            wc = dict(kv.split("=", 1) for kv in row["wildcards"].split(",") if kv)
            key = f"{wc.get('dataset')}/{wc.get('model')}/{cost.engine}"
            loads.setdefault(row["partition"], Counter())[key] += 1
    return loads


def render(numbers: dict) -> str:
    """The README block: a markdown table of the numbers."""
    rules = numbers["rules"]
    traces = rules.get("extract_traces", 0) + rules.get("extract_traces_hidden", 0)
    estimates = rules.get("estimate", 0) + rules.get("estimate_binary", 0)
    rows = [
        ("jobs of the dry run (`snakemake -n --config experiment=paper`)", f"{numbers['jobs']:,}"),
        (
            "`train_sft` / traces / breakdown scoring / `estimate`",
            f"{rules.get('train_sft', 0):,} / {traces:,} / {rules.get('score_breakdown', 0):,} "
            f"/ {estimates:,}",
        ),
        (
            "cluster jobs (`make plan`; the rest run on the submitting host)",
            f"{numbers['cluster_jobs']:,}",
        ),  # fmt: skip
        (
            "sbatch submissions (an engine service's clients run in its group)",
            f"{numbers['submissions']:,}",
        ),  # fmt: skip
    ]
    for partition, loads in sorted(numbers["loads"].items()):
        before = sum(numbers["loads_without_services"].get(partition, Counter()).values())
        rows.append(
            (
                f"inference model loads on `{partition}` (with `engine_service: false`)",
                f"{sum(loads.values()):,} ({before:,})",
            )
        )
    for partition, sums in sorted(numbers["partitions"].items()):
        if sums.get("gpu_hours"):
            rows.append((f"estimated GPU-hours, `{partition}`", f"{sums['gpu_hours']:,.1f}"))
    for engine, sums in sorted(numbers["engines"].items()):
        rows.append(
            (f"estimated GPU-hours of engine `{engine}`", f"{sums.get('gpu_hours', 0):,.1f}")
        )
    lines = ["| paper experiment | |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join([BEGIN, *lines, END])


def replace_block(text: str, block: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no generated block ({BEGIN} … {END})")
    return pattern.sub(lambda _: block, text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the README block")
    mode.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    updated = replace_block(text, render(paper_plan()))
    if args.write:
        README.write_text(updated, encoding="utf-8")
        return 0
    if updated != text:
        print("README.md: the paper experiment's figures differ from `make plan`'s; run "
              "python -m multilabel_llm.workflow.readme_numbers --write", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
