"""cluster_plan: the partition each dry-run job gets, by the SLURM plugin's own scoring over
profiles/slurm/partitions.yaml (70b class -> a100, 1b/8b -> a40, CPU jobs -> cpu)."""

from multilabel_llm.cluster_plan import main, parse_dry_run, plan

DRY_RUN = """\
rule extract_traces_hidden:
    input: results/data/goemotions/examples.parquet
    output: results/traces/goemotions/llama3-70b/main/main_test_set/traces.jsonl.gz
    jobid: 7
    wildcards: dataset=goemotions, model=llama3-70b, prompt=main, testset=main_test_set
    threads: 16
    resources: tmpdir=<TBD>, mem_mb=256000, mem=256 GB, runtime=2880, gpu=4, gpu_model=a100

rule score_unary:
    wildcards: dataset=mfrc, model=llama3-8b, prompt=main, testset=main_test_set
    threads: 8
    resources: tmpdir=<TBD>, mem_mb=64000, runtime=720, gpu=1, gpu_model=a40

rule estimate:
    wildcards: dataset=mfrc, model=llama3-8b, prompt=main, testset=main_test_set, method=constant
    resources: tmpdir=<TBD>, mem_mb=4000, runtime=60

localrule all:
    input: results/tables/table2.csv
    jobid: 0
    resources: tmpdir=/tmp

rule pinned:
    resources: mem_mb=10, slurm_partition=special
"""


def test_parse_dry_run():
    jobs = parse_dry_run(DRY_RUN)
    assert [j.rule for j in jobs] == [
        "extract_traces_hidden",
        "score_unary",
        "estimate",
        "all",
        "pinned",
    ]
    big = jobs[0]
    assert big.threads == 16
    assert big.wildcards["model"] == "llama3-70b"
    assert big.resources["mem_mb"] == 256000 and big.resources["gpu"] == 4
    assert big.resources["gpu_model"] == "a100"
    assert jobs[2].threads == 1 and jobs[3].local


def test_partitions_follow_size_class():
    rows = {r["rule"]: r for r in plan(DRY_RUN)}
    assert "all" not in rows  # local rules never reach SLURM
    assert rows["extract_traces_hidden"]["partition"] == "a100"
    assert rows["score_unary"]["partition"] == "a40"
    assert rows["estimate"]["partition"] == "cpu"
    assert rows["pinned"]["partition"] == "special"  # an explicit partition wins


def test_a_job_no_partition_fits_is_flagged():
    text = "rule huge:\n    resources: mem_mb=99999999, gpu=8, gpu_model=h100\n"
    (row,) = plan(text)
    assert row["partition"].startswith("NONE")


def test_cli_prints_table(tmp_path, capsys):
    f = tmp_path / "dry.txt"
    f.write_text(DRY_RUN)
    assert main([str(f)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split("\t")[-1] == "partition"
    assert len(lines) == 1 + 4
    assert "4 cluster jobs" in err
