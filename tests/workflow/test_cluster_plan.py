"""cluster_plan: the partition each dry-run job gets, by the SLURM plugin's own scoring over
profiles/slurm/partitions.yaml (b70 class -> a100, b1/b8 -> a40, CPU jobs -> cpu), and the cost
plan (prompts, tokens, GPU-hours) checked against numbers worked out by hand."""

import json
import math

import pytest

from multilabel_llm.workflow import cluster_plan as cp
from multilabel_llm.workflow import cost_assumptions
from multilabel_llm.workflow.cluster_plan import main
from multilabel_llm.workflow.dry_run_jobs import parse_dry_run, plan
from multilabel_llm.workflow.job_costs import params_of

DRY_RUN = """\
rule extract_traces_hidden:
    input: results/data/goemotions/examples.parquet
    output: results/traces/goemotions/llama3-70b/main/main_test_set/traces.jsonl.gz
    jobid: 7
    wildcards: dataset=goemotions, model=llama3-70b, prompt=main, testset=main_test_set
    threads: 16
    resources: tmpdir=<TBD>, mem_mb=256000, mem=256 GB, runtime=2880, gpu=4, gpu_model=a100

rule score_breakdown:
    wildcards: dataset=mfrc, model=llama3-8b, testset=main_test_set, kind=unary
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
        "score_breakdown",
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
    assert rows["score_breakdown"]["partition"] == "a40"
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
    assert lines[0].split("\t")[-2:] == ["partition", "engine"]
    assert len(lines) == 1 + 4
    assert "4 cluster jobs" in err


# --- cost plan: a synthetic listing with numbers worked out by hand ---------------------------

TOY_PARTITIONS = """\
partitions:
  cpu: {max_runtime: 2880, max_mem_mb: 256000, max_threads: 64, max_gpu: 0}
  gpu: {max_runtime: 2880, max_mem_mb: 512000, max_threads: 64, max_gpu: 4,
        available_gpu_models: [toy]}
"""

GPU_RES = "    resources: mem_mb=1000, runtime=60, gpu=2, gpu_model=toy\n"
TOY_DRY_RUN = (
    "rule extract_traces:\n"
    "    wildcards: dataset=toy, model=m2, prompt=p, testset=main_test_set\n" + GPU_RES + "\n"
    "rule score_breakdown:\n"
    "    wildcards: dataset=toy, model=m2, testset=main_test_set, kind=unary\n"
    + GPU_RES
    + "\nrule score_breakdown:\n"
    "    wildcards: dataset=toy, model=m2, testset=main_test_set, kind=binary\n"
    + GPU_RES
    + "\nrule marginalize:\n"
    "    wildcards: dataset=toy, model=m2, prompt=p, testset=main_test_set, method=tm\n"
    + GPU_RES
    + "\nrule train_sft:\n    wildcards: dataset=toy, model=m2\n"
    + GPU_RES
    + "\n"
    "rule extract_traces:\n"
    "    wildcards: dataset=toy, model=m2, prompt=p, testset=everything\n" + GPU_RES + "\n"
    "rule extract_traces:\n    wildcards: dataset=toy, model=m2, prompt=p, testset=listed\n"
    + GPU_RES
    + "\nrule estimate:\n"
    "    wildcards: dataset=toy, model=m2, prompt=p, testset=main_test_set, method=tm\n"
    "    resources: mem_mb=1000, runtime=60\n\n"
    "rule render_table:\n    wildcards: table=t\n    resources: mem_mb=1000, runtime=60\n"
)

# One dataset (3 labels, 300-token texts), a "2b" model, a 2-shot prompt, all sizes given.
TOY_CONFIG = {
    "results_dir": "results",
    "breakdown": {"n_shots": 2, "seed": 0},
    "datasets": {
        "toy": {
            "name": "toy",
            "loader": "generic",
            "multilabel": True,
            "labels": ["a", "b", "c"],
            "approx_sizes": {"train": 100, "dev": 20, "test": 50},
            "approx_text_tokens": 300,
            "test_splits": ["test"],
            "testsets": {
                "main_test_set": {"size": 40},
                "everything": {"kind": "all", "splits": ["train", "dev"]},
                "listed": {"ids_file": "ids.txt"},
            },
        }
    },
    "models": {"m2": {"name": "toy-2b", "dtype": "bfloat16", "batch_size": 10}},
    "prompts": {
        "p": {
            "name": "p",
            "n_shots": 2,
            "max_new_tokens": 5,
            "label_format": "json",
            "templates": {
                "default": {"instruction": "ABCDEFGH{labels}", "example": "abcd{text}efgh{label}"}
            },
        }
    },
    "methods": {"tm": {"kind": "marginalization", "params": {"max_paths": 2, "max_new_tokens": 3}}},
    "training": {
        "sft": {
            "batch_size": 4,
            "grad_accum": 2,
            "epochs": 2,
            "eval_every": 5,
            "max_seq_length": 256,
            "max_dev_examples": 10,
        }
    },
}

# Round numbers: 1 TFLOP/s peak at 50% MFU, 1 GB/s fully used, weights loaded at 4 GB/s.
TOY_ASSUMPTIONS = cost_assumptions.Assumptions(
    mfu=0.5, train_mfu=0.5, hbm_efficiency=1.0, load_gb_per_s=4.0
)


@pytest.fixture
def toy_plan(tmp_path, monkeypatch):
    monkeypatch.setitem(cost_assumptions.GPUS, "toy", cost_assumptions.GPU(1.0, 1.0, "test"))
    (tmp_path / "Snakefile").write_text("localrules:\n    all,\n    render_table,\n")
    (tmp_path / "ids.txt").write_text("# seven ids\n" + "\n".join(f"i{k}" for k in range(7)) + "\n")
    parts = tmp_path / "partitions.yaml"
    parts.write_text(TOY_PARTITIONS)
    return cp.cost_plan(TOY_DRY_RUN, TOY_CONFIG, parts, tmp_path, TOY_ASSUMPTIONS)


def _jobs(plan):
    return {(row["rule"], row["wildcards"]): cost for row, cost in plan.jobs}


def test_local_rules_come_from_the_workflow(toy_plan):
    rules = [row["rule"] for row, _ in toy_plan.jobs]
    assert "render_table" not in rules  # declared in the Snakefile's localrules
    assert rules.count("extract_traces") == 3 and "estimate" in rules


def test_trace_job_by_hand(toy_plan):
    # instruction 8 chars/4 + 3 labels x 2 = 8 tokens; demo 300 + 8/4 + 12 (json answer) = 314;
    # query 300 + 8/4 = 302; prefix 8 + 2 x 314 = 636; 40 prompts (size 40 <= 50 test examples)
    cost = _jobs(toy_plan)[
        ("extract_traces", "dataset=toy,model=m2,prompt=p,testset=main_test_set")
    ]
    assert cost.prompts == 40
    assert cost.prompt_tokens == pytest.approx(40 * (636 + 302))
    assert cost.prefill_tokens == pytest.approx(636 + 40 * 302)
    assert cost.generated_tokens == 40 * 5
    # 2e9 params: a pass takes max(2 * 2e9 * tokens / 0.5e12, 4e9 B / 1e9 B/s = 4 s)
    # load 4e9 / 4e9 = 1 s; prefix 636 tok: 5.088 s; 4 batches of 10 x 302 tok: 4 x 24.16 s;
    # 4 batches x 5 decode steps of 10 tok (0.08 s < 4 s): 20 x 4 s
    wall = 1 + 5.088 + 4 * 24.16 + 20 * 4
    assert cost.wall_hours == pytest.approx(wall / 3600)
    assert cost.gpu_hours == pytest.approx(2 * wall / 3600)  # both GPUs are billed
    assert cost.limit_gpu_hours == pytest.approx(2.0) and not cost.over_limit


def test_test_set_sizes(toy_plan):
    jobs = _jobs(toy_plan)
    everything = jobs[("extract_traces", "dataset=toy,model=m2,prompt=p,testset=everything")]
    assert everything.prompts == 120  # kind all over train + dev
    listed = jobs[("extract_traces", "dataset=toy,model=m2,prompt=p,testset=listed")]
    assert listed.prompts == 7  # the ids_file's id lines


def test_breakdown_counts_include_none(toy_plan):
    jobs = _jobs(toy_plan)
    unary = jobs[("score_breakdown", "dataset=toy,model=m2,testset=main_test_set,kind=unary")]
    binary = jobs[("score_breakdown", "dataset=toy,model=m2,testset=main_test_set,kind=binary")]
    assert unary.prompts == 40 * 4  # 3 labels + none
    assert binary.prompts == 40 * math.comb(4, 2)
    # header 40 + 2 shots x (300 + 16 block tokens) = 672; each query 300 + 16 = 316
    assert unary.prefill_tokens == pytest.approx(672 + 160 * 316)
    # load 1 s + prefix 672 tok 5.376 s + 16 batches of 10 x 316 tok (25.28 s each)
    assert unary.wall_hours == pytest.approx((1 + 5.376 + 16 * 25.28) / 3600)
    assert unary.generated_tokens == 0


def test_marginalize_and_sft_by_hand(toy_plan):
    jobs = _jobs(toy_plan)
    marg = jobs[("marginalize", "dataset=toy,model=m2,prompt=p,testset=main_test_set,method=tm")]
    assert marg.prompts == 40
    assert marg.generated_tokens == 40 * 2 * 3  # budget max_paths x max_new_tokens
    # per example its 938-token prompt (7.504 s), then 6 one-token passes of 4 s each
    assert marg.wall_hours == pytest.approx((1 + 40 * 7.504 + 240 * 4) / 3600)
    sft = jobs[("train_sft", "dataset=toy,model=m2")]
    # 100 train x 2 epochs + 10 dev x 7 evaluations (13 steps/epoch: 26 // 5 + 2 epoch ends)
    assert sft.prompts == 270
    assert sft.prefill_tokens == pytest.approx(270 * 256)  # 8 + 302 + 12 cut to 256
    # 50 micro-batches of 4 x 256 tokens at 3x forward FLOPs: 3 x 2 x 2e9 x 1024 / 0.5e12;
    # 7 x 3 dev batches of 1024 tokens forward only
    train_pass = 3 * 2 * 2e9 * 1024 / 0.5e12
    dev_pass = 2 * 2e9 * 1024 / 0.5e12
    assert sft.wall_hours == pytest.approx((1 + 50 * train_pass + 21 * dev_pass) / 3600)


def test_totals_add_up(toy_plan):
    rows = cp.summary_rows(toy_plan)
    fields = ("jobs", "prompts", "prefill_tokens", "generated_tokens", "gpu_hours")
    for partition in toy_plan.partitions:
        parts = [r for r in rows if r["partition"] == partition and r["rule"] != "TOTAL"]
        (total,) = [r for r in rows if r["partition"] == partition and r["rule"] == "TOTAL"]
        for f in fields:
            assert sum(r[f] for r in parts) == pytest.approx(total[f])
    grand = rows[-1]
    assert grand["partition"] == "ALL"
    for f in fields:
        assert sum(p[f] for p in toy_plan.partitions.values()) == pytest.approx(grand[f])
        assert sum(getattr(c, f, 1) for _, c in toy_plan.jobs) == pytest.approx(grand[f])
    assert toy_plan.partitions["cpu"]["gpu_hours"] == 0  # estimate: no GPU
    assert grand["jobs"] == 8 and toy_plan.warnings == {}


def test_tsv_json_and_by(tmp_path, monkeypatch, toy_plan):
    cp.write_tsv(toy_plan, tmp_path / "c.tsv")
    lines = (tmp_path / "c.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["partition", "rule", "jobs"]
    assert lines[-1].startswith("ALL\tTOTAL\t8\t")
    cp.write_json(toy_plan, tmp_path / "c.json", with_jobs=True)
    doc = json.loads((tmp_path / "c.json").read_text())
    assert len(doc["jobs"]) == 8 and doc["assumptions"]["mfu"] == 0.5
    split = cp.cost_plan(
        TOY_DRY_RUN,
        TOY_CONFIG,
        tmp_path / "partitions.yaml",
        tmp_path,
        TOY_ASSUMPTIONS,
        by="testset",
    )
    assert ("gpu", "extract_traces testset=everything") in split.groups
    assert split.total["gpu_hours"] == pytest.approx(toy_plan.total["gpu_hours"])


def test_every_size_class_has_a_parameter_count():
    # the fallback when a model name has no size token; keyed by the size-class names
    from multilabel_llm.workflow.config import load_config

    for experiment in ("paper", "slurm_test"):
        classes = load_config({"experiment": experiment})["resources"]["size_classes"]
        assert set(classes) == set(cost_assumptions.SIZE_CLASS_PARAMS)
    assert cost_assumptions.SIZE_CLASS_PARAMS["b70"] == cost_assumptions.MODEL_PARAMS["70b"]


def test_model_sizes():
    assert params_of("llama-3.1-70b") == 70.6e9
    assert params_of("medusa-1.0-zephyr-7b-beta") == 7.62e9
    assert params_of("smollm2-135m-instruct") == 0.135e9
    assert params_of("qwen2.5-13b") == 13e9  # not in the table: the number itself
    assert params_of("mystery") is None


def test_config_from_the_dry_run_command_line():
    text = "  Command: .venv/bin/snakemake -n --profile profiles/slurm --config experiment=paper\n"
    assert cp.config_items_from_dry_run(text) == {"experiment": "paper"}
    assert cp.config_items_from_dry_run("rule x:\n") is None


def test_paper_config_resolves_every_slot():
    """The real paper config: its datasets and models have documented sizes (no warnings)."""
    from multilabel_llm.workflow.config import load_config

    config = load_config({"experiment": "paper"})
    text = "".join(
        f"rule extract_traces:\n    wildcards: dataset={d}, model={m}, prompt={p}, testset=main_test_set\n"
        "    resources: mem_mb=1000, runtime=2880, gpu=4, gpu_model=a100\n\n"
        for d in config["datasets"]
        for m in list(config["models"])[:2]
        for p in list(config["prompts"])[:1]
    )
    plan = cp.cost_plan(text, config, experiment="paper")
    assert plan.warnings == {}
    assert all(c.prompts > 0 and c.gpu_hours > 0 for _, c in plan.jobs)


def test_cli_runs_the_dry_run_itself(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cp, "run_dry_run", lambda *a: calls.append(a) or DRY_RUN)
    assert main(["--experiment", "demo", "--tsv", str(tmp_path / "c.tsv")]) == 0
    assert calls and calls[0][0] == "demo"
    out, err = capsys.readouterr()
    assert "of experiment=demo" in err and "ALL" in err
    assert (tmp_path / "c.tsv").read_text().splitlines()[-1].startswith("ALL\tTOTAL\t4\t")


def test_engine_per_job_and_gpu_hours_per_engine():
    """A vLLM slot's traces and breakdown run on vLLM (tensor-parallel over the job's GPUs,
    with its start-up); its hidden-state and marginalisation jobs on HF; totals per engine."""
    from multilabel_llm.workflow.cluster_plan import cost_plan
    from multilabel_llm.workflow.cost_assumptions import ASSUMPTIONS

    dry = (
        "rule extract_traces:\n"
        "    wildcards: dataset=toy, model=m70, prompt=p, testset=main_test_set\n"
        "    resources: mem_mb=1000, runtime=600, gpu=4, gpu_model=a100\n\n"
        "rule marginalize:\n"
        "    wildcards: dataset=toy, model=m70, prompt=p, testset=main_test_set, method=tm\n"
        "    resources: mem_mb=1000, runtime=600, gpu=4, gpu_model=a100\n\n"
    )
    config = {
        "models": {"m70": {"name": "llama-3.3-70b", "size_class": "b70", "backend": "vllm"}},
        "prompts": {"p": {}},
        "datasets": {},
    }
    cp = cost_plan(dry, config, experiment="toy")
    engines = {row["rule"]: row["engine"] for row, _ in cp.jobs}
    assert engines == {"extract_traces": "vllm", "marginalize": "hf"}
    assert set(cp.engines) == {"hf", "vllm"}
    assert cp.engines["vllm"]["jobs"] == 1
    # vLLM's start-up is in its job's hours: at least the start-up on 4 GPUs
    assert cp.engines["vllm"]["gpu_hours"] >= 4 * ASSUMPTIONS.vllm_startup_s / 3600
