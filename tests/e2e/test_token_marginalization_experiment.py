"""The `token_marginalization` experiment end to end on CPU: the bundled SmolLM2 on the
content-safety fixture, the three token-level estimators beside hard predictions,
max-over-generations and compare-to-none, in our alignment table and the second paper's
metrics table (Praharaj & Kasundra 2025)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilabel_llm.core.traces import read_traces
from multilabel_llm.methods.token_level import token_level
from tests._dag import run_snakemake, scratch_workdir

EXPERIMENT = "token_marginalization"
RESULTS = "results/token_marginalization"  # the experiment's own results folder
METHODS = {
    "hard_predictions",
    "compare_to_none",
    "max_over_generations",
    "token_probability",
    "marginal_fixed_place",
    "token_marginalization",
}
CELL = "content_safety/smollm2/main/main_test_set"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    work = scratch_workdir(tmp_path_factory.mktemp("token_marg"), "data", "tests")
    proc = run_snakemake(work, "--cores", "2", "--config", f"experiment={EXPERIMENT}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work


def test_tables_compare_every_estimator(finished):
    tables = finished / RESULTS / "tables"
    ours = pd.read_csv(tables / "alignment_content_safety.csv")
    assert set(ours["method"]) == METHODS
    assert ours[["nll", "l1", "example_f1"]].notna().all().all()
    assert set(ours["reference"]) == {"gold"}  # aggregate labels only
    paper = pd.read_csv(tables / "token_level_content_safety.csv")
    assert set(paper["method"]) == METHODS and (paper["threshold"] == 0.2).all()
    assert paper["hamming_loss"].between(0, 1).all()
    assert paper["micro_f1_at_threshold"].between(0, 1).all()
    assert "Token Probability" in (tables / "token_level_content_safety.md").read_text()


def test_token_level_rows_follow_from_the_traces(finished):
    meta, traces = read_traces(finished / RESULTS / f"traces/{CELL}/traces.jsonl.gz")
    for t in traces:  # every trace records what estimators 1 and 2 read
        assert len(t.extra["gen_probs"]) == len(t.extra["gen_ids"])
        assert len(t.extra["label_ends"]) == len(t.label_steps)
    ids = [t.id for t in traces]
    for kind in ("token_probability", "marginal_fixed_place"):
        dist = pd.read_parquet(finished / RESULTS / f"distributions/{CELL}/{kind}.parquet")
        dist = dist.set_index("id").loc[ids, meta.labels].to_numpy()
        again = token_level(meta, traces, ids, meta.labels, True, kind)[meta.labels].to_numpy()
        np.testing.assert_allclose(dist, again)
    # fixed place never exceeds token probability (a product of probabilities <= 1)
    fixed = pd.read_parquet(
        finished / RESULTS / f"distributions/{CELL}/marginal_fixed_place.parquet"
    )
    token = pd.read_parquet(finished / RESULTS / f"distributions/{CELL}/token_probability.parquet")
    assert (fixed[meta.labels].to_numpy() <= token[meta.labels].to_numpy() + 1e-12).all()
