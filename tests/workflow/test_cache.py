"""Between-experiment reuse: with `snakemake --cache`, a second working directory that asks for
the same traces (same model, prompt, dataset ids) takes them from the output cache instead of
running the model again, and gets byte-identical files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRACES = "results/slurm_test/traces/goemotions/smollm2/json10/main_test_set/traces.jsonl.gz"
TRACES_META = TRACES.replace(".jsonl.gz", ".meta.json")  # the sidecar travels with it
TRACE_LOG = "logs/extract_traces/goemotions/smollm2/json10/main_test_set.log"

pytestmark = pytest.mark.slow


def run_cached(workdir: Path, cache: Path) -> str:
    (workdir / "data").symlink_to(ROOT / "data")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "SNAKEMAKE_OUTPUT_CACHE": str(cache),
        "MULTILABEL_LLM_CACHE": str(ROOT / "resources" / "models"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
        "--cores", "2", "--cache", "--config", "experiment=slurm_test", "--", TRACES,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_second_workdir_takes_traces_from_the_output_cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()

    first_run = run_cached(first, cache)
    assert "to cache" in first_run
    assert "loaded smollm2" in (first / TRACE_LOG).read_text()  # the model really ran here
    assert any(cache.iterdir()), "nothing was stored in the output cache"

    second_run = run_cached(second, cache)
    assert "from cache" in second_run
    # Snakemake touches the job's log on a cache hit but the script never runs
    assert (second / TRACE_LOG).read_text() == "", "the model ran again instead of the cache"
    assert (second / TRACES).read_bytes() == (first / TRACES).read_bytes()
    assert (second / TRACES_META).read_bytes() == (first / TRACES_META).read_bytes()
