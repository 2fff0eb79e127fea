"""Which SLURM partition every job of a dry run would get, decided by the SLURM plugin's own code.

A dry run (``snakemake -n``) prints each job's resources but not its partition: the
partition is chosen at submission by snakemake-executor-plugin-slurm from
``--slurm-partition-config`` (profiles/slurm/partitions.yaml). This module reads the dry-run
text, rebuilds each job's resources, and scores the partitions with the plugin's
``Partition.score_job_fit`` so the listing is exactly what submission would do::

    snakemake -n --profile profiles/slurm --config experiment=paper \\
        | python -m multilabel_llm.cluster_plan > plan.tsv      # summary on stderr
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PARTITIONS = Path(__file__).resolve().parents[2] / "profiles" / "slurm" / "partitions.yaml"
COLUMNS = ("rule", "wildcards", "threads", "mem_mb", "runtime", "gpu", "gpu_model", "partition")


class _Resources(dict):
    """dict with attribute access, the shape the plugin expects from ``job.resources``."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(key) from err


@dataclass
class PlannedJob:
    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    resources: _Resources = field(default_factory=_Resources)
    threads: int = 1
    local: bool = False

    # the attributes the plugin's scoring reads
    @property
    def name(self) -> str:
        return self.rule

    def is_group(self) -> bool:
        return False


def _value(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def parse_dry_run(text: str) -> list[PlannedJob]:
    """Jobs of a ``snakemake -n`` listing: rule (local or not), wildcards, resources, threads."""
    jobs: list[PlannedJob] = []
    for line in text.splitlines():
        head = re.match(r"^(localrule|rule) (\w+):$", line.strip())
        if head:
            jobs.append(PlannedJob(head.group(2), local=head.group(1) == "localrule"))
            continue
        if not jobs or not line.startswith("    "):
            continue
        key, _, rest = line.strip().partition(": ")
        if key == "wildcards":
            jobs[-1].wildcards = dict(kv.split("=", 1) for kv in rest.split(", "))
        elif key == "resources":
            for kv in rest.split(", "):
                name, _, val = kv.partition("=")
                jobs[-1].resources[name] = _value(val)
        elif key == "threads":
            jobs[-1].threads = int(rest)
    return jobs


def choose_partition(job: PlannedJob, partitions) -> str:
    """The plugin's choice: an explicit slurm_partition, else the best-scoring partition."""
    if job.resources.get("slurm_partition"):
        return str(job.resources["slurm_partition"])
    scored = [(p.score_job_fit(job), p.name) for p in partitions]
    scored = [(s, n) for s, n in scored if s is not None]
    if not scored:
        return "NONE (no partition fits; the plugin falls back to the cluster default)"
    return max(scored)[1]


def plan(text: str, partitions_file: str | Path = DEFAULT_PARTITIONS) -> list[dict]:
    """One row per cluster job (local rules run on the submit host and are left out)."""
    from snakemake_executor_plugin_slurm.partitions import read_partition_file

    partitions = read_partition_file(Path(partitions_file))
    rows = []
    for job in parse_dry_run(text):
        if job.local:
            continue
        res = job.resources
        rows.append(
            {
                "rule": job.rule,
                "wildcards": ",".join(f"{k}={v}" for k, v in job.wildcards.items()),
                "threads": job.threads,
                "mem_mb": res.get("mem_mb", ""),
                "runtime": res.get("runtime", ""),
                "gpu": res.get("gpu", 0),
                "gpu_model": res.get("gpu_model", ""),
                "partition": choose_partition(job, partitions),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dry_run", nargs="?", help="file with snakemake -n output (default stdin)")
    parser.add_argument("--partitions", default=str(DEFAULT_PARTITIONS))
    args = parser.parse_args(argv)
    text = Path(args.dry_run).read_text() if args.dry_run else sys.stdin.read()
    rows = plan(text, args.partitions)
    if not rows:
        print("no cluster jobs found in the dry-run text", file=sys.stderr)
        return 1
    print("\t".join(COLUMNS))
    for row in rows:
        print("\t".join(str(row[c]) for c in COLUMNS))
    summary = Counter((r["partition"], r["rule"]) for r in rows)
    print(f"{len(rows)} cluster jobs:", file=sys.stderr)
    for (partition, rule), n in sorted(summary.items()):
        print(f"  {partition:<8} {rule:<36} {n:>7}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
