"""The jobs of a dry run (``snakemake -n``) and the SLURM partition each gets at submission.

The listing prints each job's resources but not its partition: snakemake-executor-plugin-slurm
chooses it from ``--slurm-partition-config`` (profiles/slurm/partitions.yaml). This rebuilds
each job's resources and scores the partitions with the plugin's ``Partition.score_job_fit``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PARTITIONS = REPO_ROOT / "profiles" / "slurm" / "partitions.yaml"


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


def read_partitions(partitions_file):
    from snakemake_executor_plugin_slurm.partitions import read_partition_file

    return read_partition_file(Path(partitions_file))


def partition_row(job: PlannedJob, partition: str) -> dict:
    res = job.resources
    return {
        "rule": job.rule,
        "wildcards": ",".join(f"{k}={v}" for k, v in job.wildcards.items()),
        "threads": job.threads,
        "mem_mb": res.get("mem_mb", ""),
        "runtime": res.get("runtime", ""),
        "gpu": res.get("gpu", 0),
        "gpu_model": res.get("gpu_model", ""),
        "partition": partition,
    }


def local_rules(workdir: str | Path = REPO_ROOT) -> set[str]:
    """Rules declared local in the workflow (``localrules:`` blocks, ``localrule: True``).

    Snakemake 9's dry run prints them as plain ``rule`` lines, so the listing alone would
    send tables and figures to the cpu partition.
    """
    root = Path(workdir)
    names: set[str] = set()
    for path in [root / "Snakefile", *sorted((root / "rules").rglob("*.smk"))]:
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        rule = None
        for k, line in enumerate(lines):
            head = re.match(r"^(?:rule|checkpoint)\s+(\w+)", line)
            if head:
                rule = head.group(1)
            elif re.match(r"^\s+localrule:\s*True", line) and rule:
                names.add(rule)
            elif re.match(r"^localrules:", line):
                block = [line.split(":", 1)[1], *_indented(lines[k + 1 :])]
                names.update(n for n in re.split(r"[\s,]+", " ".join(block)) if n)
    return names


def _indented(lines: list[str]):
    """The continuation lines of a block (comments dropped), up to the next top-level line."""
    for line in lines:
        if line.strip() and not line[0].isspace():
            return
        yield line.split("#", 1)[0]


def plan(
    text: str,
    partitions_file: str | Path = DEFAULT_PARTITIONS,
    workdir: str | Path = REPO_ROOT,
) -> list[dict]:
    """One row per cluster job (local rules run on the submit host and are left out)."""
    partitions = read_partitions(partitions_file)
    local = local_rules(workdir)
    return [
        partition_row(job, choose_partition(job, partitions))
        for job in parse_dry_run(text)
        if not (job.local or job.rule in local)
    ]
