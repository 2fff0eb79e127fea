"""Cost plan of a dry run: partition, prompts, tokens and estimated GPU-hours of every job.

A dry run (``snakemake -n``) prints each job's resources but not its partition: the
partition is chosen at submission by snakemake-executor-plugin-slurm from
``--slurm-partition-config`` (profiles/slurm/partitions.yaml). This module reads the dry-run
text, rebuilds each job's resources, and scores the partitions with the plugin's
``Partition.score_job_fit`` so the listing is exactly what submission would do::

    snakemake -n --profile profiles/slurm --config experiment=paper \\
        | python -m multilabel_llm.workflow.cluster_plan > plan.tsv      # cost plan on stderr
    python -m multilabel_llm.workflow.cluster_plan --experiment paper --tsv cost.tsv --json cost.json

On top of the partition it estimates, per rule and partition, the prompts, the prefill and
generated tokens and the GPU-hours, from each job's wildcards (dataset, model, prompt, testset,
method) and the composed config. Every number is an ESTIMATE from the assumptions (a
roofline model: compute-bound prefill, bandwidth-bound decoding); docs/cluster_plan.md states
them with a worked example. The grid is never assumed: only the jobs the dry run lists count.

The parts: :mod:`~multilabel_llm.workflow.dry_run_jobs` (the listing's jobs and partitions),
:mod:`~multilabel_llm.workflow.cost_assumptions` (every assumption),
:mod:`~multilabel_llm.workflow.job_costs` (each job's work and GPU-hours); this module sums them
into the plan, writes its tables and is the command line.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from multilabel_llm.workflow.config import ConfigError, load_config
from multilabel_llm.workflow.cost_assumptions import ASSUMPTIONS, GPUS, Assumptions
from multilabel_llm.workflow.dry_run_jobs import (
    DEFAULT_PARTITIONS,
    REPO_ROOT,
    choose_partition,
    local_rules,
    parse_dry_run,
    partition_row,
    plan,
    read_partitions,
)
from multilabel_llm.workflow.job_costs import (
    SERVED_RULES,
    JobCost,
    PlanContext,
    job_cost,
    service_key,
)

DEFAULT_PROFILE = REPO_ROOT / "profiles" / "slurm"
COLUMNS = (
    "rule",
    "wildcards",
    "threads",
    "mem_mb",
    "runtime",
    "gpu",
    "gpu_model",
    "partition",
    "engine",
)


# ============================== the plan ==============================

SUM_FIELDS = (
    "jobs",
    "submissions",
    "loads",
    "prompts",
    "prompt_tokens",
    "prefill_tokens",
    "generated_tokens",
    "gpu_hours",
    "limit_gpu_hours",
    "over_limit",
)


@dataclass
class CostPlan:
    experiment: str
    jobs: list  # (row dict, JobCost)
    groups: dict  # (partition, rule) -> sums
    partitions: dict  # partition -> sums
    total: dict
    warnings: dict
    assumptions: dict
    engines: dict = field(default_factory=dict)  # engine -> sums (model-bound jobs)


def _add(into: dict, cost: JobCost) -> None:
    into["jobs"] = into.get("jobs", 0) + 1
    for name in SUM_FIELDS[1:]:
        into[name] = into.get(name, 0) + getattr(cost, name)


def cost_plan(
    text: str,
    config: dict,
    partitions_file: str | Path = DEFAULT_PARTITIONS,
    workdir: str | Path = REPO_ROOT,
    assumptions: Assumptions = ASSUMPTIONS,
    experiment: str = "",
    by: str | None = None,
) -> CostPlan:
    """Every cluster job with its partition and cost, summed per (partition, rule[, by])."""
    partitions = read_partitions(partitions_file)
    local = local_rules(workdir)
    ctx = PlanContext(config, workdir, assumptions)
    jobs, groups, per_partition, total, engines = [], {}, {}, {}, {}
    planned = [j for j in parse_dry_run(text) if not (j.local or j.rule in local)]
    keys = {id(job): service_key(ctx, job) for job in planned}
    services = {keys[id(j)]: j for j in planned if j.rule == "engine_service"}
    # a service's group runs its clients one after another: their hours count on its limit
    group_hours: Counter = Counter()
    for job in planned:
        service = services.get(keys[id(job)]) if job.rule in SERVED_RULES else None
        partition = choose_partition(service or job, partitions)
        cost = job_cost(ctx, job, partitions, partition, service)
        if service is not None:
            group_hours[keys[id(job)]] += cost.wall_hours
        jobs.append((job, {**partition_row(job, partition), "engine": cost.engine}, cost))
    for job, _, cost in jobs:
        if job.rule == "engine_service" and cost.gpus and cost.limit_gpu_hours:
            wall = cost.wall_hours + group_hours[keys[id(job)]]
            cost.over_limit = wall > cost.limit_gpu_hours / cost.gpus
    for job, row, cost in jobs:
        if cost.engine:
            _add(engines.setdefault(cost.engine, {}), cost)
        rule = f"{job.rule} {by}={job.wildcards.get(by, '-')}" if by else job.rule
        _add(groups.setdefault((row["partition"], rule), {}), cost)
        _add(per_partition.setdefault(row["partition"], {}), cost)
        _add(total, cost)
    jobs = [(row, cost) for _, row, cost in jobs]
    return CostPlan(
        experiment=experiment,
        jobs=jobs,
        groups=dict(sorted(groups.items())),
        partitions=dict(sorted(per_partition.items())),
        total=total,
        warnings=dict(ctx.warnings),
        assumptions={**asdict(assumptions), "gpus": {k: asdict(v) for k, v in GPUS.items()}},
        engines=dict(sorted(engines.items())),
    )


# ============================== output ==============================


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def summary_rows(cp: CostPlan) -> list[dict]:
    """Per (partition, rule) rows, each partition's TOTAL row after them, then ALL / TOTAL."""
    out = []
    for partition, sums in cp.partitions.items():
        for (p, rule), g in cp.groups.items():
            if p == partition:
                out.append({"partition": p, "rule": rule, **g})
        out.append({"partition": partition, "rule": "TOTAL", **sums})
    out.append({"partition": "ALL", "rule": "TOTAL", **cp.total})
    return out


def format_table(cp: CostPlan) -> str:
    """The plan as a fixed-width table (what ``main`` prints on stderr)."""
    rows = summary_rows(cp)
    width = max([len("rule"), *(len(r["rule"]) for r in rows)])
    fmt = (
        f"{{:<10}} {{:<{width}}} {{:>7}} {{:>7}} {{:>6}} {{:>9}} {{:>11}} {{:>13}} {{:>10}} "
        "{:>11} {:>10}"
    )
    lines = [
        f"{cp.total.get('jobs', 0)} cluster jobs in {cp.total.get('submissions', 0)} "
        f"submissions, {cp.total.get('loads', 0)} model loads"
        + (f" of experiment={cp.experiment}" if cp.experiment else "")
        + ": ESTIMATED cost (assumptions: docs/cluster_plan.md)",
        fmt.format(
            "partition",
            "rule",
            "jobs",
            "sbatch",
            "loads",
            "prompts",
            "prefill tok",
            "generated tok",
            "GPU-h",
            "GPU-h limit",
            "over limit",
        ),
    ]
    for r in rows:
        lines.append(
            fmt.format(
                r["partition"][:10],
                r["rule"],
                r["jobs"],
                r["submissions"],
                r["loads"],
                _si(r["prompts"]),
                _si(r["prefill_tokens"]),
                _si(r["generated_tokens"]),
                f"{r['gpu_hours']:,.1f}",
                f"{r['limit_gpu_hours']:,.0f}",
                r["over_limit"],
            )
        )
    for engine, sums in cp.engines.items():
        lines.append(
            f"engine {engine}: {sums['jobs']} model-bound jobs, {sums['loads']} model loads, "
            f"{sums['gpu_hours']:,.1f} GPU-h (limit {sums['limit_gpu_hours']:,.0f})"
        )
    for message, n in cp.warnings.items():
        lines.append(f"warning ({n} jobs): {message}")
    return "\n".join(lines)


TSV_FIELDS = ("partition", "rule") + SUM_FIELDS


def write_tsv(cp: CostPlan, path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(TSV_FIELDS) + "\n")
        for r in summary_rows(cp):
            vals = [r[k] if isinstance(r[k], str | int) else f"{r[k]:.6g}" for k in TSV_FIELDS]
            handle.write("\t".join(str(v) for v in vals) + "\n")


def write_json(cp: CostPlan, path, with_jobs: bool = False) -> None:
    doc = {
        "experiment": cp.experiment,
        "note": "estimates from a roofline model; see docs/cluster_plan.md",
        "summary": summary_rows(cp),
        "engines": cp.engines,
        "warnings": cp.warnings,
        "assumptions": cp.assumptions,
    }
    if with_jobs:
        doc["jobs"] = [{**row, **asdict(cost)} for row, cost in cp.jobs]
    Path(path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


# ============================== command line ==============================


def config_items_from_dry_run(text: str) -> dict | None:
    """The ``--config`` items of the dry run's own command line (Snakemake prints it)."""
    line = next((s for s in text.splitlines() if s.strip().startswith("Command:")), None)
    if line is None:
        return None
    try:
        argv = shlex.split(line.split("Command:", 1)[1])
    except ValueError:
        return None
    items, on = {}, False
    for arg in argv:
        if arg in ("--config", "-C"):
            on = True
        elif arg.startswith("-"):
            on = False
        elif on and "=" in arg:
            key, _, value = arg.partition("=")
            items[key] = value
    return items


def run_dry_run(experiment: str, overrides: str, profile: str, workdir: Path) -> str:
    """``snakemake -n --profile <profile> --config experiment=NAME``; about a minute for paper."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--profile", profile, "--config"]
    cmd.append(f"experiment={experiment}")
    if overrides:
        cmd.append(f"overrides={overrides}")
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}{done.stdout[-2000:]}")
    return done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dry_run", nargs="?", help="file with snakemake -n output ('-' or default: stdin)"
    )
    parser.add_argument("--partitions", default=str(DEFAULT_PARTITIONS))
    parser.add_argument(
        "--experiment",
        help="compose this experiment; without a dry-run file, run the dry run itself",
    )
    parser.add_argument("--overrides", default="", help='Hydra overrides, as overrides="..."')
    parser.add_argument("--profile", default=str(DEFAULT_PROFILE), help="for the dry run")
    parser.add_argument("--workdir", default=str(REPO_ROOT), help="where results/ and data/ are")
    parser.add_argument("--by", help="also split each rule by this wildcard, e.g. testset")
    parser.add_argument("--tsv", help="write the per-(partition, rule) cost plan here")
    parser.add_argument("--json", help="write the cost plan (and per-job costs) here")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    if args.dry_run and args.dry_run != "-":
        text = Path(args.dry_run).read_text()
    elif args.experiment and not args.dry_run:
        try:
            text = run_dry_run(args.experiment, args.overrides, args.profile, workdir)
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 2
    else:
        text = sys.stdin.read()
    cp = None
    config = _compose(text, args.experiment, args.overrides)
    if config is not None:
        name = args.experiment or str(config.get("experiment_name") or "")
        cp = cost_plan(text, config, args.partitions, workdir, experiment=name, by=args.by)
        rows = [row for row, _ in cp.jobs]
    else:
        rows = plan(text, args.partitions, workdir)
    if not rows:
        print("no cluster jobs found in the dry-run text", file=sys.stderr)
        return 1
    print("\t".join(COLUMNS))
    for row in rows:
        print("\t".join(str(row.get(c, "")) for c in COLUMNS))
    if cp is None:
        summary = Counter((r["partition"], r["rule"]) for r in rows)
        print(f"{len(rows)} cluster jobs (no cost plan: see above):", file=sys.stderr)
        for (partition, rule), n in sorted(summary.items()):
            print(f"  {partition:<8} {rule:<36} {n:>7}", file=sys.stderr)
        return 0
    print(format_table(cp), file=sys.stderr)
    if args.tsv:
        write_tsv(cp, args.tsv)
    if args.json:
        write_json(cp, args.json, with_jobs=True)
    return 0


def _compose(text: str, experiment: str | None, overrides: str) -> dict | None:
    """The config the dry run used: --experiment, else its printed command line, else default."""
    items = {"experiment": experiment} if experiment else config_items_from_dry_run(text) or {}
    if overrides:
        items["overrides"] = overrides
    try:
        return load_config(dict(items))
    except ConfigError as err:
        print(f"cost plan skipped: cannot compose the config ({err})", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
