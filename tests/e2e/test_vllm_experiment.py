"""The vllm_demo experiment end to end: the real Snakefile with `backend: vllm` (CPU build).

Its model-bound jobs (traces, unary breakdown) run on vLLM; the methods, alignment scores and
tables downstream are the same code as for the HF engine. Never skipped (see
tests/engine/test_vllm_engine.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

from multilabel_llm.core.traces import read_traces
from tests._dag import ROOT, run_snakemake

pytestmark = pytest.mark.slow
RESULTS = "results/vllm_demo"


def test_vllm_experiment_runs_end_to_end(tmp_path):
    (tmp_path / "data").symlink_to(ROOT / "data")
    target = f"{RESULTS}/tables/alignment_goemotions.csv"
    args = ("--config", "experiment=vllm_demo")
    proc = run_snakemake(tmp_path, "--cores", "2", target, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    run = tmp_path / RESULTS / "traces/goemotions/smollm2/json10/main_test_set"
    meta, traces = read_traces(run / "traces.jsonl.gz")
    assert meta.info["engine"] == "vllm" and meta.info["logit_kind"] == "logprob"
    assert len(traces) == 8 and all(t.step_probs for t in traces)
    log = (tmp_path / "logs/score_unary/goemotions/smollm2/main_test_set.log").read_text()
    # the breakdown job ran in the vLLM engine service, which started vLLM once for the pair
    assert f"{RESULTS}/engines/goemotions/smollm2/vllm.json" in log
    service = (tmp_path / "logs/engine_service/goemotions/smollm2/vllm.log").read_text()
    served = [line for line in service.splitlines() if "jobs served" in line]
    assert served and int(served[-1].split(": ")[-1].split()[0]) >= 2, service
    job_logs = sorted((tmp_path / "logs").rglob("*.log"))
    starts = sum("vLLM" in f.read_text() and "ready" in f.read_text() for f in job_logs)
    assert starts == 1, "vLLM started more than once for one (dataset, model)"
    table = pd.read_csv(tmp_path / target)
    methods = set(table["method"])
    assert {"compare_to_none", "hard_predictions", "max_over_generations"} <= methods
    assert "unary_breakdown" in methods
    assert table.select_dtypes("number").notna().any().any()
    # a rerun has nothing to do
    again = run_snakemake(tmp_path, "-n", target, *args)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
