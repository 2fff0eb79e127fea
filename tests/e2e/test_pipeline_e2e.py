"""The real DAG end to end on the `tiny` experiment: real data excerpt, real bundled model.

Runs the project's Snakefile for real in a scratch working directory, checks that the bundled
model's own predictions and every method's row reach the alignment table, that a rerun has
nothing to do, and that the HTML report opens in headless Chromium with every figure decoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multilabel_llm.core.traces import read_traces
from multilabel_llm.workflow.config import load_config
from tests._browser import headless_chromium, open_every_entry
from tests._dag import ROOT, run_snakemake

EXPERIMENT = "tiny"
RUN = "results/tiny/traces/goemotions/smollm2/json10/main_test_set/traces.jsonl.gz"

pytestmark = pytest.mark.slow


def snakemake(work: Path, *args: str, timeout: int = 1800):
    return run_snakemake(work, *args, timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    (work / "data").symlink_to(ROOT / "data")  # dataset configs name repo-relative files
    proc = snakemake(work, "--cores", "2", "--config", f"experiment={EXPERIMENT}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work


def test_dry_run_lists_jobs_before_anything_ran(tmp_path):
    (tmp_path / "data").symlink_to(ROOT / "data")
    proc = snakemake(tmp_path, "-n", "--config", f"experiment={EXPERIMENT}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule in ("prepare_dataset", "extract_traces_hidden", "score_breakdown", "estimate", "all"):
        assert rule in proc.stdout


def test_traces_hold_the_bundled_models_own_generations(finished_run):
    meta, traces = read_traces(finished_run / RUN)
    assert meta.model == "smollm2-135m-instruct"
    assert len(traces) == 6
    # real generations differ between inputs and carry per-step logits over labels + none
    assert len({t.text_out for t in traces}) > 1
    logits = np.asarray(traces[0].step_logits)
    assert logits.shape[1] == len(meta.labels) + 1 and np.isfinite(logits).all()
    probs = np.asarray(traces[0].step_probs)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_alignment_table_has_every_method_with_computed_numbers(finished_run):
    table = pd.read_csv(finished_run / "results/tiny/tables/alignment_goemotions.csv")
    cfg = load_config({"experiment": EXPERIMENT})
    shown = set(table["method"])
    assert {m for m in cfg["methods"]} <= shown
    for column in ("nll", "l1", "example_f1"):
        values = pd.to_numeric(table[column], errors="coerce")
        assert values.notna().all(), f"{column} has missing values:\n{table}"
    assert (table["l1"] >= 0).all() and table["example_f1"].between(0, 1).all()


def test_rerun_has_nothing_to_do(finished_run):
    proc = snakemake(finished_run, "-n", "--config", f"experiment={EXPERIMENT}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_html_report_renders_every_figure_in_chromium(finished_run):
    report = finished_run / "results/tiny/report.html"
    proc = snakemake(finished_run, "--config", f"experiment={EXPERIMENT}", "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with headless_chromium() as driver:
        entries = open_every_entry(driver, report)
    figures = [path for _, _, path in entries if path.endswith(".png")]
    assert len(figures) >= 10


def test_changed_prompt_template_recomputes_only_that_prompts_traces(finished_run):
    """Issue 27: after a full run, one prompt's template changes. Its engine service has to
    run, and Snakemake reruns every client of a service that runs, so the (dataset, model)'s
    other trace jobs run too, in the same service with one model load: they reuse all their
    shards (their logs say so) and write the same traces. Only the changed prompt's traces
    are computed; other (dataset, model) pairs are not touched. Last: it changes the run."""
    import gzip
    import re

    traces = sorted((finished_run / "results/tiny/traces").rglob("traces.jsonl.gz"))
    pair = [p for p in traces if "/goemotions/smollm2/" in str(p)]
    changed = [p for p in pair if "/reverse/" in str(p)]
    assert changed and len(changed) < len(pair) < len(traces)
    before = {p: (p.stat().st_mtime_ns, gzip.open(p).read()) for p in traces}
    instruction = "Name the emotions of each input from the last label to the first. "
    override = (
        f"prompts={{reverse: {{templates: {{goemotions: {{instruction: '{instruction}'}}}}}}}}"
    )
    proc = snakemake(finished_run, "--cores", "2", "--config", f"experiment={EXPERIMENT}", override)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    logs = finished_run / "logs"
    for path in traces:
        mtime, content = before[path]
        if path not in pair:  # another (dataset, model): untouched
            assert path.stat().st_mtime_ns == mtime, path
            continue
        rel = path.parent.relative_to(finished_run / "results/tiny/traces")
        rule = (
            "extract_traces_hidden" if (path.parent / "hidden.npz").exists() else "extract_traces"
        )
        log = (logs / rule / f"{rel}.log").read_text()
        assert "in engine service results/tiny/engines/goemotions/smollm2/hf.json" in log, log
        computed = re.search(r"'computed_shards': \[([^\]]*)\]", log).group(1).strip()
        if path in changed:
            assert computed and re.search(r"prompt\S* changed since its", log), log
        else:  # rerun with its service, every shard reused: the same traces
            assert computed == "", log
            assert gzip.open(path).read() == content, path
    service = (logs / "engine_service/goemotions/smollm2/hf.log").read_text()
    served = int(re.findall(r"(\d+) jobs served", service)[-1])
    assert served >= len(pair)
    clients = [f.read_text() for f in logs.rglob("*.log")]
    clients = [t for t in clients if "engines/goemotions/smollm2/hf.json (job" in t]
    assert len(clients) == served  # every job of this run's service logged it ran there
    assert sum("loading smollm2-135m-instruct on hf" in t for t in clients) == 1  # one load
