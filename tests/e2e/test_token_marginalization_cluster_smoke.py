"""`token_marginalization_cluster` executed end to end on a CPU through its stand-in twin
(token_marginalization_cluster_smoke): Llama Guard's own prompt and native answers, the JSON
prompt whose demonstrations come from a pool without single-label rows, ours and the authors'
three estimators, and the token-level table's all-zero rows and explored mass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multilabel_llm.core.traces import read_traces
from tests._dag import run_snakemake, scratch_workdir

EXPERIMENT = "token_marginalization_cluster_smoke"
RESULTS = f"results/{EXPERIMENT}"
LG_CELL = "content_safety/llama_guard_3_8b/lg/main_test_set"
CHAT_CELL = "content_safety/llama31_8b_instruct/chat/main_test_set"
AUTHORS = {"marginal_fixed_place_authors", "token_marginalization_authors"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    work = scratch_workdir(tmp_path_factory.mktemp("cluster_smoke"), "data", "tests")
    proc = run_snakemake(work, "--cores", "2", "--config", f"experiment={EXPERIMENT}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work


def test_every_cell_and_estimator_in_the_token_level_table(finished):
    table = pd.read_csv(finished / f"{RESULTS}/tables/token_level_content_safety.csv")
    lg = table[table["prompt"] == "lg"]
    chat = table[table["prompt"] == "chat"]
    assert AUTHORS <= set(lg["method"]) and not AUTHORS & set(chat["method"])
    assert {"token_marginalization", "token_probability"} <= set(chat["method"])
    assert table["zero_rows"].between(0, 1).all()
    searched = table[table["method"].str.startswith("token_marginalization")]
    assert searched["explored_mass"].between(0, 1).all()
    md = (finished / f"{RESULTS}/tables/token_level_content_safety.md").read_text()
    assert "explored mass" in md and "Token Marginalisation (authors)" in md


def test_llama_guard_cell_reads_native_answers_with_the_unsafe_label(finished):
    meta, traces = read_traces(finished / f"{RESULTS}/traces/{LG_CELL}/traces.jsonl.gz")
    assert meta.labels[0] == "unsafe" and "S14" in meta.labels
    assert meta.info.get("label_format") == "llama_guard"
    dist = pd.read_parquet(finished / f"{RESULTS}/distributions/{LG_CELL}/hard_predictions.parquet")
    assert list(dist.columns) == ["id", *meta.labels]


def test_json_prompt_draws_demonstrations_from_multilabel_rows_only(finished):
    meta, traces = read_traces(finished / f"{RESULTS}/traces/{CHAT_CELL}/traces.jsonl.gz")
    assert len(traces) == 3 and meta.info.get("label_format") == "json"


@pytest.mark.parametrize("cell", [LG_CELL, CHAT_CELL])
def test_our_search_keeps_what_greedy_names(finished, cell):
    """No row whose greedy output names a label is all zero under estimator 3 (ours)."""
    meta, traces = read_traces(finished / f"{RESULTS}/traces/{cell}/traces.jsonl.gz")
    base = finished / f"{RESULTS}/distributions/{cell}"
    dist = pd.read_parquet(base / "token_marginalization.parquet").set_index("id")
    stats = pd.read_parquet(base / "token_marginalization.paths.parquet").set_index("id")
    assert (stats["explored_mass"] > 0).all()
    for trace in traces:
        named = [lab for lab in trace.pred_labels or [] if lab in meta.labels]
        if named:
            assert dist.loc[trace.id, meta.labels].to_numpy().max() > 0, trace.text_out


def test_authors_values_are_raw(finished):
    base = finished / f"{RESULTS}/distributions/{LG_CELL}"
    for method in AUTHORS:
        values = pd.read_parquet(base / f"{method}.parquet").drop(columns="id").to_numpy()
        assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    stats = pd.read_parquet(base / "token_marginalization_authors.paths.parquet")
    assert (stats["explored_mass"] + stats["unexplored_mass"]).to_numpy() == pytest.approx(1.0)
