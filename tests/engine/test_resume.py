"""Sharded extraction: a killed run resumes from its last finished shard, same outputs."""

import gzip
import json

import numpy as np
import pytest

from multilabel_llm.core.traces import read_traces
from multilabel_llm.engine.run import extract_traces
from tests.builders import TOY_PROMPT_CFG, toy_dataset
from tests.builders import tiny_model as tiny

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


def test_shards_of_the_old_format_are_reused(tmp_path):
    # shards written before the meta moved to a sidecar (first line {"meta": ...}) still count
    ds = toy_dataset(n_queries=4)
    ids = ds.split("dev")["id"].tolist()
    _run(tmp_path, ds, ids)
    want = _lines(tmp_path / "traces.jsonl.gz"), read_traces(tmp_path / "traces.jsonl.gz")[0]
    for shard in sorted((tmp_path / "shards").glob("shard-*.jsonl.gz")):
        sidecar = shard.with_name(shard.name.replace(".jsonl.gz", ".meta.json"))
        head = json.dumps({"meta": json.loads(sidecar.read_text())})
        with gzip.open(shard, "rt") as f:
            body = f.read()
        with gzip.open(shard, "wt") as f:
            f.write(head + "\n" + body)
        sidecar.unlink()
    (tmp_path / "traces.jsonl.gz").unlink()
    assert _run(tmp_path, ds, ids)["computed_shards"] == []
    got = _lines(tmp_path / "traces.jsonl.gz"), read_traces(tmp_path / "traces.jsonl.gz")[0]
    assert got == want


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


def test_changed_shard_size_after_a_kill_never_merges_short(tmp_path):
    # issue 15.1: shards of 2 then a rerun with shards of 3 gave 5 of 6 examples
    ds = toy_dataset(n_queries=6)
    ids = ds.split("dev")["id"].tolist()
    model, tok = tiny()

    def run(shard_size, on_shard=None):
        return extract_traces(
            ds, ids, model, tok, CFG, tmp_path / "traces.jsonl.gz", model_name="tiny",
            shard_size=shard_size, on_shard=on_shard,
        )  # fmt: skip

    def kill_after_first(k):
        raise Killed

    with pytest.raises(Killed):
        run(2, kill_after_first)
    summary = run(3)
    assert summary["computed_shards"] == [0, 1] and summary["skipped_shards"] == []
    _, traces = read_traces(tmp_path / "traces.jsonl.gz")
    assert [t.id for t in traces] == ids


def test_shard_holding_other_ids_stops_the_merge(tmp_path):
    ds = toy_dataset(n_queries=6)
    ids = ds.split("dev")["id"].tolist()
    _run(tmp_path, ds, ids)
    shards = tmp_path / "shards"
    # a shard overwritten behind the manifest's back (copied in from another run)
    (shards / "shard-00000.jsonl.gz").write_bytes((shards / "shard-00001.jsonl.gz").read_bytes())
    (tmp_path / "traces.jsonl.gz").unlink()
    with pytest.raises(RuntimeError, match=r"shard-00000\.jsonl\.gz: holds 3 ids .*missing \['q0'"):
        _run(tmp_path, ds, ids)
    assert not (tmp_path / "traces.jsonl.gz").exists()


def _save_tiny(path, seed=0):
    from tests.builders import tiny_random_llama

    model, tok = tiny_random_llama(tiny()[1], seed=seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model


def _save_adapter(base, path, seed):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    # init_lora_weights=False: a random (not zero) B, so the adapter moves the outputs
    cfg = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(path)


def test_changed_adapter_or_checkpoint_under_the_same_name_recomputes(tmp_path):
    # issue 15.1: a new adapter (or model path) under the same model name reused old shards
    from multilabel_llm.core.io import write_id_list
    from multilabel_llm.data.canonical import save_canonical
    from multilabel_llm.engine.jobs import extract_traces_from_files

    ds = toy_dataset(n_queries=4)
    ids = ds.split("dev")["id"].tolist()
    save_canonical(ds, tmp_path / "data")
    write_id_list(tmp_path / "ids.txt", ids)
    _save_tiny(tmp_path / "ckpt_a", seed=0)
    _save_tiny(tmp_path / "ckpt_b", seed=1)
    _save_adapter(_save_tiny(tmp_path / "base_for_lora", seed=0), tmp_path / "lora1", seed=1)
    _save_adapter(_save_tiny(tmp_path / "base_for_lora2", seed=0), tmp_path / "lora2", seed=2)

    def run(path, adapter=None):
        cfg = {"name": "same", "path": str(path), "dtype": "float32", "shard_size": 2}
        out = tmp_path / "run" / "traces.jsonl.gz"
        summary = extract_traces_from_files(
            tmp_path / "data", tmp_path / "ids.txt", cfg, CFG, out, adapter=adapter
        )
        return summary, _lines(out)

    first, plain = run(tmp_path / "ckpt_a")
    again, same = run(tmp_path / "ckpt_a")
    assert first["computed_shards"] == [0, 1] and again["computed_shards"] == []
    assert same == plain
    with_lora, lora_lines = run(tmp_path / "ckpt_a", tmp_path / "lora1")
    assert with_lora["computed_shards"] == [0, 1]
    other_lora, other_lines = run(tmp_path / "ckpt_a", tmp_path / "lora2")
    assert other_lora["computed_shards"] == [0, 1]
    moved, moved_lines = run(tmp_path / "ckpt_b")
    assert moved["computed_shards"] == [0, 1]
    # the recomputed traces are the new model's, not a copy of the old ones
    steps = [[t.get("step_logits") for t in lines] for lines in (plain, lora_lines, other_lines)]
    assert steps[0] != steps[1] and steps[1] != steps[2]
    assert [t.get("step_logits") for t in moved_lines] != steps[0]
    manifest = json.loads((tmp_path / "run" / "shards" / "manifest.json").read_text())
    assert set(manifest["components"]) >= {"model", "weights", "dtype", "ids", "shard_layout"}


def test_run_identity_tracks_checkpoint_files_and_adapter_bytes(tmp_path):
    from multilabel_llm.engine.identity import run_identity

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"a": 1}')
    (ckpt / "model.safetensors").write_bytes(b"x" * 10)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"lora-1")
    cfg = {"name": "m", "path": str(ckpt)}
    base = run_identity(cfg, adapter)
    assert run_identity({**cfg, "name": "renamed"}, adapter) == base  # the name is not content
    (adapter / "adapter_model.safetensors").write_bytes(b"lora-2")
    assert run_identity(cfg, adapter)["adapter"] != base["adapter"]
    (ckpt / "model.safetensors").write_bytes(b"x" * 11)
    assert run_identity(cfg, adapter)["checkpoint"] != base["checkpoint"]
    assert run_identity({"name": "h", "hf_id": "org/m", "revision": "v2"})["checkpoint"] == {
        "hf_id": "org/m",
        "revision": "v2",
        "snapshot": None,
    }
    with pytest.raises(ValueError, match="adapter .*not a directory"):
        run_identity(cfg, tmp_path / "missing")
