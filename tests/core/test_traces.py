"""The trace file format: one JSON object per trace (pandas reads it as is), meta in a sidecar;
files of the old format (a first ``{"meta": ...}`` line) still read."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from multilabel_llm.core.traces import (
    LabelStep,
    Trace,
    TraceMeta,
    read_traces,
    traces_meta_path,
    write_traces,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "traces"
COLUMNS = [
    "id",
    "text_out",
    "pred_labels",
    "label_steps",
    "step_logits",
    "step_probs",
    "form_logits",
    "extra",
]


def _traces() -> list[Trace]:
    return [
        Trace(
            id=f"t{i}",
            text_out='{"label": ["joy"]}',
            pred_labels=["joy"] if i else None,
            label_steps=[LabelStep(1, "joy")],
            step_logits=[[0.0, 1.0, 2.0], [3.0, 4.0, float(i)]],
            step_probs=[[0.2, 0.3, 0.5], [0.1, 0.8, 0.1]],
        )
        for i in range(3)
    ]


META = TraceMeta(labels=["joy", "anger"], model="m", prompt="p", info={"label_format": "json"})


def test_sidecar_name():
    assert traces_meta_path("a/b/traces.jsonl.gz") == Path("a/b/traces.meta.json")
    assert traces_meta_path("shards/shard-00003.jsonl.gz") == Path("shards/shard-00003.meta.json")
    assert traces_meta_path("x/odd.gz") == Path("x/odd.gz.meta.json")


def test_traces_load_straight_into_pandas(tmp_path):
    path = tmp_path / "traces.jsonl.gz"
    write_traces(path, META, _traces())
    frame = pd.read_json(path, lines=True)
    assert list(frame.columns) == COLUMNS
    assert frame["id"].tolist() == ["t0", "t1", "t2"]
    assert frame["step_logits"].iloc[2] == [[0.0, 1.0, 2.0], [3.0, 4.0, 2.0]]
    sidecar = tmp_path / "traces.meta.json"
    assert json.loads(sidecar.read_text()) == META.to_dict()
    meta, traces = read_traces(path)
    assert meta == META
    assert [t.to_dict() for t in traces] == [t.to_dict() for t in _traces()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traces.jsonl.gz", "traces.meta.json"]


def test_no_traces_keeps_the_meta(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    write_traces(path, META, [])
    assert read_traces(path) == (META, [])


def test_old_format_with_a_meta_line_still_reads(tmp_path):
    path = tmp_path / "traces.jsonl.gz"  # no sidecar: the meta is the first line
    with open(FIXTURES / "toy.jsonl", "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    meta, traces = read_traces(path)
    assert meta.labels == ["anger", "joy", "sadness"] and meta.model == "toy-model"
    assert [t.id for t in traces][:2] == ["a", "b"]
    assert len(traces) == 5


def test_missing_sidecar_is_named(tmp_path):
    path = tmp_path / "traces.jsonl.gz"
    write_traces(path, META, _traces())
    traces_meta_path(path).unlink()
    with pytest.raises(ValueError, match=r"meta sidecar .*traces\.meta\.json is missing"):
        read_traces(path)
