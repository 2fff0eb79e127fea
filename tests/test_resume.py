"""Sharded extraction: a killed run resumes from its last finished shard, same outputs."""

import gzip
import json

import numpy as np
import pytest

from multilabel_llm.engine.run import extract_traces
from multilabel_llm.engine.testing import TOY_PROMPT_CFG, toy_dataset
from multilabel_llm.engine.testing import tiny_model as tiny
from multilabel_llm.traces import read_traces

CFG = {**TOY_PROMPT_CFG, "max_new_tokens": 5}


class Killed(Exception):
    pass


def _run(tmp, ds, ids, on_shard=None):
    model, tok = tiny()
    return extract_traces(
        ds,
        ids,
        model,
        tok,
        CFG,
        tmp / "traces.jsonl.gz",
        model_name="tiny",
        shard_size=3,
        batch_size=2,
        hidden_path=tmp / "hidden.npz",
        on_shard=on_shard,
    )


def _lines(path):
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    ds = toy_dataset(n_queries=10, repeat=2)
    ids = ds.split("dev")["id"].tolist()
    assert len(ids) == 10  # -> 4 shards of 3, 3, 3, 1

    def kill_after_two(k):
        if k == 1:
            raise Killed

    a = tmp_path / "a"
    with pytest.raises(Killed):
        _run(a, ds, ids, kill_after_two)
    assert sorted(p.name for p in (a / "shards").glob("shard-*.jsonl.gz")) == [
        "shard-00000.jsonl.gz",
        "shard-00001.jsonl.gz",
    ]
    assert not (a / "traces.jsonl.gz").exists()  # the rule output appears only when whole
    before = {p.name: p.stat().st_mtime_ns for p in (a / "shards").glob("shard-*")}
    summary = _run(a, ds, ids)
    assert summary["computed_shards"] == [2, 3] and summary["skipped_shards"] == [0, 1]
    for name, mtime in before.items():  # finished shards were not rewritten
        assert (a / "shards" / name).stat().st_mtime_ns == mtime

    b = tmp_path / "b"
    _run(b, ds, ids)
    assert _lines(a / "traces.jsonl.gz") == _lines(b / "traces.jsonl.gz")
    meta, traces = read_traces(a / "traces.jsonl.gz")
    assert [t.id for t in traces] == ids and meta.info["n_examples"] == 10
    with np.load(a / "hidden.npz") as ha, np.load(b / "hidden.npz") as hb:
        assert ha["ids"].tolist() == ids
        np.testing.assert_array_equal(ha["states"], hb["states"])
        assert ha["states"].shape == (10, tiny()[0].config.hidden_size)


def test_changed_settings_discard_stale_shards(tmp_path):
    ds = toy_dataset(n_queries=4)
    ids = ds.split("dev")["id"].tolist()
    _run(tmp_path, ds, ids)
    model, tok = tiny()
    summary = extract_traces(
        ds,
        ids,
        model,
        tok,
        {**CFG, "seed": 3},
        tmp_path / "traces.jsonl.gz",
        model_name="tiny",
        shard_size=3,
    )
    assert summary["computed_shards"] == [0, 1]  # new demos -> nothing reused


def test_unknown_ids_fail_clearly(tmp_path):
    ds = toy_dataset(n_queries=2)
    model, tok = tiny()
    with pytest.raises(ValueError, match="not in dataset"):
        extract_traces(ds, ["nope"], model, tok, CFG, tmp_path / "t.jsonl.gz")
