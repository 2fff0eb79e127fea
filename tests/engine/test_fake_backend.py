"""The drivers against the model-free fake backend: shards, resume and fingerprints in
milliseconds, with the real tokenizer, prompt builder, parser and shard store."""

import logging

import pytest

from multilabel_llm.core.traces import read_traces
from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer
from multilabel_llm.engine.run import extract_traces
from tests.builders import TOY_PROMPT_CFG, toy_dataset
from tests.fake_backend import FakeBackend


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(bundled_model_cfg())


def _run(tmp_path, backend, ids, **kw):
    out = tmp_path / "traces.jsonl.gz"
    summary = extract_traces(
        toy_dataset(), ids, backend, backend.tokenizer, TOY_PROMPT_CFG, out, shard_size=3, **kw
    )
    return summary, read_traces(out)


def test_fake_answers_travel_through_the_real_parser(tmp_path, tok):
    ds = toy_dataset()
    ids = ds.split("dev")["id"].tolist()[:7]
    fake = FakeBackend(tok, ds.labels)
    summary, (meta, traces) = _run(tmp_path, fake, ids)
    assert summary["n"] == 7 and fake.calls == 7
    assert meta.info["engine"] == "fake" and [t.id for t in traces] == ids
    assert all(t.parse_ok for t in traces)
    assert any(t.pred_labels for t in traces)  # some answers name labels ...
    for t in traces:  # ... and each named label starts at a generated step
        assert [s.label for s in t.label_steps if s.label != "none"] == (t.pred_labels or [])


def test_a_killed_run_resumes_from_its_shards(tmp_path, tok):
    ds = toy_dataset()
    ids = ds.split("dev")["id"].tolist()[:7]  # shards of 3, 3, 1

    def kill_after_first(k):
        if k == 0:
            raise KeyboardInterrupt

    fake = FakeBackend(tok, ds.labels)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, fake, ids, on_shard=kill_after_first)
    assert fake.calls == 3
    again = FakeBackend(tok, ds.labels)
    summary, _ = _run(tmp_path, again, ids)
    assert summary["skipped_shards"] == [0] and again.calls == 4


def test_another_backend_state_discards_the_shards(tmp_path, tok, caplog):
    ds = toy_dataset()
    ids = ds.split("dev")["id"].tolist()[:6]
    _run(tmp_path, FakeBackend(tok, ds.labels, seed=0), ids)
    other = FakeBackend(tok, ds.labels, seed=1)
    with caplog.at_level(logging.WARNING):
        summary, _ = _run(tmp_path, other, ids)
    assert summary["skipped_shards"] == [] and other.calls == 6
    assert "fake changed" in caplog.text
