"""SLURM integration test: the tiny DAG through profiles/slurm on a real one-node cluster.

.ci/slurm/start_cluster.sh brings up slurmctld + slurmd on localhost (partitions ``cpu`` and
``a100``, two fake A100s), installing Debian's slurm-wlm and munge when absent. The
experiment ``slurm_test`` runs the bundled SmolLM2 twice: as itself (size class tiny, CPU)
and as ``smollm2-as-70b`` (size class b70, a routing test, never a 70B result). Evidence
comes from SLURM's own job completion log (JobCompLoc), joined to Snakemake's jobs through the
plugin's per-job sbatch logs (``.snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log``):

* every non-local job of the planned DAG ran through sbatch and completed;
* each engine service (rules/inference.smk) ran in one submission together with its clients
  (the model's traces and breakdown scores): one sbatch and one model load per
  (dataset, model, engine), its group's log under ``group_<id>/``;
* the b70-class slot's group ran on ``a100``, everything else on ``cpu``;
* fault tolerance: the b70 group is SIGKILLed (``scancel -s KILL``) after its trace job's
  first shard; Snakemake resubmits it (profile ``retries``), the retry resumes from the
  finished shards, and the run completes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("MLLLM_SLURM_DIR", "/tmp/mlllm-slurm"))
JOBCOMP = STATE / "jobcomp.log"
TARGET = "results/slurm_test/tables/alignment_goemotions.csv"
BIG = "smollm2-as-70b"  # the model slot declared as size class b70
MODELS = ("smollm2", BIG)
GPU_RULES = {"engine_service", "extract_traces", "extract_traces_hidden", "score_breakdown"}
KILLED_TRACES = f"results/slurm_test/traces/goemotions/{BIG}/json10/main_test_set"


def _cluster_answers() -> bool:
    if shutil.which("scontrol") is None:
        return False
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return "UP" in out.stdout


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster; started (and stopped afterwards) here if not up already."""
    already = _cluster_answers()
    if not already:
        if os.geteuid() != 0:
            pytest.skip("starting the one-node SLURM cluster needs root")
        if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
            pytest.skip("no slurm-wlm and no apt-get to install it")
        subprocess.run([str(ROOT / ".ci/slurm/start_cluster.sh")], check=True, timeout=900)
    assert _cluster_answers(), "SLURM controller does not answer after start_cluster.sh"
    yield
    if not already:
        subprocess.run([str(ROOT / ".ci/slurm/stop_cluster.sh")], check=False, timeout=120)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A fresh working directory with the repository's data/ and profiles/ linked in, so the
    profile's relative partition file resolves exactly as in a user's checkout."""
    wd = tmp_path_factory.mktemp("slurm_wf")
    for name in ("data", "profiles"):
        (wd / name).symlink_to(ROOT / name)
    return wd


def _env() -> dict:
    env = dict(os.environ)
    # Jobs on the node run `python -m snakemake` and the scripts: the project's venv must come
    # first on PATH; sbatch --export=ALL carries it to the job.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.pop("SLURM_JOB_ID", None)
    return env


def _snakemake_cmd() -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--config",  # first: --config takes every word up to the next option
        "experiment=slurm_test",
        "--profile",
        "profiles/slurm",
        # profiles/default is loaded too, as it is for users (workflow profile)
        # no slurmdbd on the test cluster: poll squeue, skip the sacct-based account lookup
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "1",
    ]


def snakefile_localrules(snakefile: Path = ROOT / "Snakefile") -> set[str]:
    """Rules the Snakefile keeps on the submitting host (its `localrules:` block); a dry run
    prints them as plain `rule` lines, so the test reads them from the workflow itself."""
    names, inside = set(), False
    for line in snakefile.read_text().splitlines():
        if line.startswith("localrules:"):
            inside = True
        elif inside and line.strip():
            if not line[0].isspace():
                break
            names.add(line.strip().rstrip(","))
    return names


def planned_jobs(dry_run_output: str) -> tuple[set[tuple[str, str]], set[str]]:
    """(rule, "_"-joined wildcard values) of every cluster job in a dry run, and the local
    rules. The join is the plugin's log directory name (utils.get_job_wildcards)."""
    jobs, local = set(), set()
    rule, kind = None, None
    for line in dry_run_output.splitlines():
        m = re.match(r"^(localrule|rule) (\w+):$", line.strip())
        if m:
            if rule is not None and kind == "rule":
                jobs.add((rule, ""))
            kind, rule = m.groups()
            if kind == "localrule":
                local.add(rule)
                rule = None
            continue
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and rule is not None:
            values = [kv.split("=", 1)[1] for kv in m.group(1).split(", ")]
            jobs.add((rule, "_".join(values)))
            rule = None
    if rule is not None and kind == "rule":
        jobs.add((rule, ""))
    return jobs, local


def parse_jobcomp(path: Path) -> pd.DataFrame:
    """JobCompLoc (jobcomp/filetxt): one line of KEY=VALUE fields per finished job."""
    rows = []
    for line in path.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            rows.append(fields)
    return pd.DataFrame(rows)


def group_log_jobs(text: str) -> set[tuple[str, str]]:
    """(rule, "_"-joined wildcard values) of the jobs a group job's log says it ran (the
    Snakemake inside the allocation prints each job as ``[local]rule NAME:`` + wildcards)."""
    jobs, rule = set(), None
    for line in text.splitlines():
        m = re.match(r"^(?:localrule|rule) (\w+):$", line.strip())
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and rule is not None:
            jobs.add((rule, "_".join(kv.split("=", 1)[1] for kv in m.group(1).split(", "))))
            rule = None
    return jobs


def sbatch_logs(workdir: Path) -> pd.DataFrame:
    """The plugin's sbatch logs: which SLURM job id ran which (rule, wildcards). A group job
    (an engine service with its clients) has one log for all its jobs: one row each, with the
    group's id in ``group``."""
    rows = []
    base = workdir / ".snakemake" / "slurm_logs"
    for log in base.glob("rule_*/**/*.log"):
        rel = log.relative_to(base).parts
        rows.append(
            {
                "rule": rel[0].removeprefix("rule_"),
                "wildcards": "/".join(rel[1:-1]),
                "JobId": log.stem,
                "group": "",
            }
        )
    for log in base.glob("group_*/**/*.log"):
        group = log.relative_to(base).parts[0].removeprefix("group_")
        for rule, wildcards in sorted(group_log_jobs(log.read_text(errors="replace"))):
            rows.append({"rule": rule, "wildcards": wildcards, "JobId": log.stem, "group": group})
    return pd.DataFrame(rows, columns=["rule", "wildcards", "JobId", "group"])


def _kill_after_first_shard(proc: subprocess.Popen, workdir: Path, timeout: float = 600) -> str:
    """Wait until the b70 trace job has written its first shard, then SIGKILL its SLURM job:
    the group of the b70 engine service, the one job on ``a100`` (every process of it, as a
    node crash would). Returns the killed job id."""
    shard = workdir / KILLED_TRACES / "shards" / "shard-00000.jsonl.gz"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if shard.exists():
            break
        time.sleep(0.2)
    assert shard.exists(), "the b70 trace job never wrote its first shard"
    out = subprocess.run(
        ["squeue", "-h", "--states=RUNNING", "-o", "%i|%P|%k"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ids = [line.split("|")[0] for line in out.splitlines() if line.split("|")[1] == "a100"]
    assert len(ids) == 1, f"expected one running b70 group job, squeue says:\n{out}"
    subprocess.run(["scancel", "--signal=KILL", "--full", ids[0]], check=True)
    return ids[0]


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_dag_runs_through_slurm_with_routing_and_retry(cluster, workdir):
    dry = subprocess.run(
        [*_snakemake_cmd(), "-n", TARGET],
        cwd=workdir,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    planned, local = planned_jobs(dry.stdout)
    local |= snakefile_localrules()
    planned = {(rule, wc) for rule, wc in planned if rule not in local}
    rules = {r for r, _ in planned}
    assert {"extract_traces", "score_breakdown", "estimate"} <= rules
    assert {"all", "score_alignment", "build_testsets"} <= local
    assert (("extract_traces", f"goemotions_{BIG}_json10_main_test_set")) in planned

    first_comp_line = len(JOBCOMP.read_text().splitlines()) if JOBCOMP.exists() else 0
    started = time.time()
    with open(workdir / "run.log", "w") as log:
        proc = subprocess.Popen(
            [*_snakemake_cmd(), TARGET],
            cwd=workdir,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            killed = _kill_after_first_shard(proc, workdir)
            rc = proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    run_log = (workdir / "run.log").read_text()
    assert rc == 0, run_log[-5000:]
    assert (workdir / TARGET).exists()
    print(f"SLURM run took {time.time() - started:.0f} s")

    # SLURM's own record of this run: jobs of this working directory since the test began.
    comp = parse_jobcomp(JOBCOMP)
    comp = comp.iloc[first_comp_line:]
    comp = comp[comp["WorkDir"] == str(workdir)]
    subs = sbatch_logs(workdir)
    merged = subs.merge(comp, on="JobId", how="outer", indicator=True)
    # every sbatch log has a completion record and every record of this run an sbatch log
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]

    completed = merged[merged["JobState"] == "COMPLETED"]
    ran = set(zip(completed["rule"], completed["wildcards"], strict=True))
    assert ran == planned, f"not via sbatch: {planned - ran}; unexpected: {ran - planned}"
    assert not (rules & local)

    # One submission per engine service, its clients inside it: one model load per pair.
    services = completed[completed["rule"] == "engine_service"]
    assert sorted(services["wildcards"]) == sorted(f"goemotions_{m}_hf" for m in MODELS)
    for service in services.itertuples():
        _, model, _ = service.wildcards.split("_")
        group = completed[completed["JobId"] == service.JobId]
        clients = set(zip(group["rule"], group["wildcards"], strict=True)) - {
            ("engine_service", service.wildcards)
        }
        assert clients == {
            (rule, wc)
            for rule, wc in planned
            if rule in GPU_RULES - {"engine_service"} and wc.startswith(f"goemotions_{model}_")
        }, (model, clients)
        log = workdir / "logs/engine_service/goemotions" / model / "hf.log"
        assert f"{len(clients)} jobs served" in log.read_text()
    assert not completed[completed["rule"].isin(GPU_RULES)]["group"].eq("").any()

    # Routing: the b70-class model's inference on a100, all else on cpu.
    for row in merged.itertuples():
        big_gpu_job = row.rule in GPU_RULES and f"_{BIG}_" in f"_{row.wildcards}_"
        expected = "a100" if big_gpu_job else "cpu"
        assert row.Partition == expected, (row.rule, row.wildcards, row.Partition)
    # the b70 slot's service, traces and unary scores: one group job on a100
    assert (completed["Partition"] == "a100").sum() >= 3
    assert completed[completed["Partition"] == "a100"]["JobId"].nunique() == 1

    # Fault tolerance: the killed job failed in SLURM, a retry of the same job completed
    # and resumed from the shard(s) the killed attempt had finished.
    traces_jobs = merged[
        (merged["rule"] == "extract_traces")
        & (merged["wildcards"] == f"goemotions_{BIG}_json10_main_test_set")
    ].sort_values("JobId", key=lambda s: s.astype(int))
    assert traces_jobs["JobId"].tolist()[0] == killed
    assert traces_jobs["JobState"].tolist()[0] != "COMPLETED"
    assert traces_jobs["JobState"].tolist()[-1] == "COMPLETED"
    assert "Trying to restart job" in run_log
    rule_log = workdir / "logs/extract_traces/goemotions" / BIG / "json10/main_test_set.log"
    summary = rule_log.read_text()
    skipped = re.search(r"'skipped_shards': \[([^\]]*)\]", summary)
    assert skipped and skipped.group(1).strip(), summary[-2000:]
    assert "0" in skipped.group(1).split(", ")

    # The result is a real table over both model slots.
    table = pd.read_csv(workdir / TARGET)
    assert table.shape[0] > 0


def test_planned_jobs_parser():
    text = (
        "rule prepare_dataset:\n    output: x\n    wildcards: dataset=goemotions\n"
        "localrule all:\n    input: y\n"
        "rule estimate:\n    wildcards: dataset=d, model=m, prompt=p, testset=t, method=k\n"
        "rule collect:\n    output: z\n"
    )
    jobs, local = planned_jobs(text)
    assert jobs == {("prepare_dataset", "goemotions"), ("estimate", "d_m_p_t_k"), ("collect", "")}
    assert local == {"all"}


def test_group_log_jobs_parser():
    text = (
        "localrule engine_service:\n    output: a.json (service)\n"
        "    wildcards: dataset=d, model=m, engine=hf\n"
        "rule extract_traces:\n    wildcards: dataset=d, model=m, prompt=p, testset=t\n"
        "Select jobs to execute...\n"
    )
    assert group_log_jobs(text) == {("engine_service", "d_m_hf"), ("extract_traces", "d_m_p_t")}


def test_parse_jobcomp(tmp_path):
    f = tmp_path / "jobcomp.log"
    f.write_text(
        "JobId=7 UserId=root(0) Name=mlllm_x JobState=COMPLETED Partition=cpu "
        "WorkDir=/tmp/w ExitCode=0:0 \n"
        "JobId=8 UserId=root(0) Name=mlllm_x JobState=FAILED Partition=a100 "
        "WorkDir=/tmp/w ExitCode=0:9 \n"
    )
    comp = parse_jobcomp(f)
    assert comp["JobId"].tolist() == ["7", "8"]
    assert comp["Partition"].tolist() == ["cpu", "a100"]
    assert comp["JobState"].tolist() == ["COMPLETED", "FAILED"]


def test_snakefile_localrules_are_read_from_the_workflow():
    local = snakefile_localrules()
    assert {"all", "render_table", "score_alignment", "demo_pool"} <= local
    assert not local & {"extract_traces", "score_breakdown", "estimate", "train_sft"}
