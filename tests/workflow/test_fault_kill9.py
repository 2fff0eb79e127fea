"""Faults the in-process matrix (tests/workflow/test_fault_matrix.py) does not reach (issue 26):

* a 20,000-character query text against the context length, through the model config's keys
  (``max_context``, ``too_long_prompts``): ``fail`` stops before writing anything, naming the
  id, the token counts and the key; ``truncate`` finishes with the prompt cut to fit and the
  count in the trace meta;
* a real ``kill -9`` of token-level marginalisation and of SFT, each run in its own process
  through the rule's front-end (the same tiny checkpoint loaded by path as in this process),
  killed once its first shard / checkpoint is on disk, then rerun unchanged (it must resume and
  equal a clean run) and with a changed setting (a search setting; the learning rate), which
  must discard what the killed run left and equal a clean run of the new settings.

The killed process holds once its first piece is written (tests/_kill9_child.py), so the kill
lands mid-run however fast or loaded the machine is; every wait is bounded, so a hang fails.
Everything runs on one torch thread in both processes: CPU results are then bit-identical.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from multilabel_llm.core.traces import read_traces
from multilabel_llm.data.canonical import save_canonical
from multilabel_llm.engine.jobs import extract_traces_from_files, marginalize_from_files
from multilabel_llm.engine.loading import load_tokenizer
from multilabel_llm.engine.run import plan_run
from multilabel_llm.supervised.jobs import train_sft_from_files
from multilabel_llm.supervised.sft_checkpoints import FINGERPRINT_FILE
from tests.builders import TOY_PROMPT_CFG, save_tiny_checkpoint, toy_dataset
from tests.workflow.test_fault_matrix import (  # the matrix's settings and stand-ins, reused
    CFG,
    SEARCH,
    SFT_CFG,
    SFT_TRAIN_IDS,
    _sft_dataset,
    lean_cpu,  # noqa: F401  (a fixture: one torch thread, gc frozen)
)

CHILD = Path(__file__).parents[1] / "_kill9_child.py"
STARTUP_S = 120  # bound on the killed process reaching its first shard / checkpoint
LONG_CHARS = 20_000
# the SFT matrix's short training prompt (training time grows with tokens)
SFT_PROMPT = {
    **TOY_PROMPT_CFG,
    "templates": {
        "default": {
            **TOY_PROMPT_CFG["templates"]["default"],
            "instruction": "Emotions ({labels}):\n",
        }
    },
}


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    """The tiny random Llama as a real checkpoint dir: both processes load the same weights
    (``threads: 1`` is set by the jobs; the ``lean_cpu`` fixture restores it afterwards)."""
    path = tmp_path_factory.mktemp("tiny") / "model"
    return {**save_tiny_checkpoint(path, hidden=16, layers=2), "threads": 1}


def _write_dataset(root: Path, dataset, ids) -> tuple[Path, Path]:
    save_canonical(dataset, root / "data")
    (root / "ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return root / "data", root / "ids.txt"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------- a 20,000-character text


def _long_text() -> str:
    words = ["worried", "about", "the", "cabin", "tomorrow", "?!", "I'm", "sooo", "😱"]
    text = " ".join(words[i * 7 % len(words)] for i in range(LONG_CHARS))
    return text[:LONG_CHARS]


@pytest.fixture(scope="module")
def long_inputs(tmp_path_factory):
    ds = toy_dataset(n_queries=3)
    ds.examples.loc[ds.examples["id"] == "q1", "text"] = _long_text()
    assert len(ds.examples.set_index("id").loc["q1", "text"]) == LONG_CHARS
    root = tmp_path_factory.mktemp("long")
    return ds, _write_dataset(root, ds, ["q0", "q1", "q2"])


@pytest.mark.parametrize("max_context", [256, None])  # None: the model's own 4096 positions
def test_long_text_fails_before_writing_anything(
    max_context,
    tiny_cfg,
    long_inputs,
    tmp_path,
    lean_cpu,  # noqa: F811
):
    ds, (data_dir, ids_path) = long_inputs
    tok = load_tokenizer(tiny_cfg)
    n_tokens = len(plan_run(ds, ["q0", "q1", "q2"], tok, CFG).prompts[1])
    assert n_tokens > 4096  # longer than the model's context, not only the configured one
    model_cfg = {**tiny_cfg, "too_long_prompts": "fail"}
    if max_context:
        model_cfg["max_context"] = max_context
    out = tmp_path / "out"
    out.mkdir()
    context = max_context or 4096
    message = (
        rf"1 of 3 prompts do not fit the model's context of {context} tokens with "
        rf"{CFG['max_new_tokens']} left for the answer \(longest: id 'q1', {n_tokens} prompt "
        r"tokens\).*too_long_prompts: truncate"
    )
    with pytest.raises(ValueError, match=message):
        extract_traces_from_files(data_dir, ids_path, model_cfg, CFG, out / "traces.jsonl.gz")
    with pytest.raises(ValueError, match=message):  # marginalisation plans the same prompts
        marginalize_from_files(
            data_dir, ids_path, model_cfg, CFG, {**SEARCH, "shard_size": 2},
            out / "m.parquet", out / "m.paths.parquet",
        )  # fmt: skip
    assert _files(out) == []  # no shard, no manifest, no output


def test_long_text_truncated_to_fit(tiny_cfg, long_inputs, tmp_path, caplog, lean_cpu):  # noqa: F811
    ds, (data_dir, ids_path) = long_inputs
    model_cfg = {**tiny_cfg, "max_context": 256, "too_long_prompts": "truncate"}
    out = tmp_path / "traces.jsonl.gz"
    with caplog.at_level(logging.WARNING):
        summary = extract_traces_from_files(data_dir, ids_path, model_cfg, CFG, out)
    assert "1 of 3 query texts were cut to fit the model's context of 256 tokens" in caplog.text
    meta, traces = read_traces(out)
    assert summary["n"] == 3 and [t.id for t in traces] == ["q0", "q1", "q2"]
    assert meta.info["n_truncated"] == 1
    tok = load_tokenizer(tiny_cfg)
    full = plan_run(ds, ["q0", "q1", "q2"], tok, CFG)
    cut = plan_run(ds, ["q0", "q1", "q2"], tok, CFG, max_context=256, too_long="truncate")
    max_new = meta.info["max_new_tokens"]
    # the prompt fits with room for the answer, and little more than needed was cut
    assert 256 - max_new - 8 <= len(cut.prompts[1]) <= 256 - max_new
    assert cut.prompts[1][:8] == full.prompts[1][:8]  # the instruction is kept, the text cut
    assert cut.prompts[0] == full.prompts[0] and cut.prompts[2] == full.prompts[2]
    assert all(len(t.step_logits) <= max_new for t in traces)  # one row per generated token


# ------------------------------------------------------------------ kill -9, for real


@contextmanager
def _running(tmp_path: Path, stage: str, kwargs: dict):
    """The stage in its own process (tests/_kill9_child.py); never outlives the test."""
    spec = tmp_path / f"{stage}.spec.json"
    spec.write_text(json.dumps({"stage": stage, "kwargs": kwargs}, default=str))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(tmp_path / f"{stage}.log", "wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(spec)], stdout=log_file, stderr=log_file, env=env
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)


def _kill_when(child: subprocess.Popen, ready, log_path: Path) -> None:
    """Wait (bounded) until ``ready()`` holds, then SIGKILL the child and reap it."""
    deadline = time.monotonic() + STARTUP_S
    while not ready():
        if child.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"the run ended (rc {child.returncode}) before the kill:\n{tail}")
        if time.monotonic() > deadline:
            pytest.fail(f"no first piece within {STARTUP_S} s: {log_path} (hung?)")
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL, "the run ended before the kill"


def _marg(data_dir, ids_path, model_cfg, search, out: Path) -> dict:
    return {
        "data_dir": str(data_dir),
        "ids_path": str(ids_path),
        "model_cfg": model_cfg,
        "prompt_cfg": CFG,
        "settings": {**search, "shard_size": 2},
        "dist_path": str(out / "m.parquet"),
        "stats_path": str(out / "m.paths.parquet"),
        "threads": 1,
    }


def _marg_result(out: Path):
    dist = pd.read_parquet(out / "m.parquet")
    stats = pd.read_parquet(out / "m.paths.parquet").drop(columns="seconds")
    return dist, stats


def _same_frames(a, b) -> bool:
    return all(x.equals(y) for x, y in zip(a, b, strict=True))


def test_kill9_during_marginalization(tiny_cfg, tmp_path, caplog, lean_cpu):  # noqa: F811
    ds = toy_dataset(n_queries=6)
    ids = ds.split("dev")["id"].tolist()  # 3 shards of 2
    data_dir, ids_path = _write_dataset(tmp_path, ds, ids)
    changed = {**SEARCH, "top_k": 2}  # fewer paths: other masses
    killed = tmp_path / "killed"
    shards = killed / "m.shards"
    job = _marg(data_dir, ids_path, tiny_cfg, SEARCH, killed)
    with _running(tmp_path, "marginalize", job) as child:
        # the clean runs go while the child starts (its imports take seconds)
        clean = {}
        for name, search in (("plain", SEARCH), ("changed", changed)):
            marginalize_from_files(**_marg(data_dir, ids_path, tiny_cfg, search, tmp_path / name))
            clean[name] = _marg_result(tmp_path / name)
        assert not _same_frames(clean["plain"], clean["changed"])  # the change decides it
        _kill_when(child, (shards / "shard-00000.parquet").is_file, tmp_path / "marginalize.log")
    # after the kill: the finished shard and the manifest, no output, nothing half-written
    assert _files(killed) == ["m.shards/manifest.json", "m.shards/shard-00000.parquet"]
    assert pd.read_parquet(shards / "shard-00000.parquet")["id"].tolist() == ids[:2]
    shutil.copytree(killed, tmp_path / "killed-copy")

    summary = marginalize_from_files(**_marg(data_dir, ids_path, tiny_cfg, SEARCH, killed))
    assert summary["skipped_shards"] == [0] and summary["computed_shards"] == [1, 2]
    assert _same_frames(_marg_result(killed), clean["plain"])

    again = tmp_path / "killed-copy"
    with caplog.at_level(logging.WARNING):
        summary = marginalize_from_files(**_marg(data_dir, ids_path, tiny_cfg, changed, again))
    assert summary["skipped_shards"] == [] and summary["computed_shards"] == [0, 1, 2]
    assert "settings changed since its 1 shard files were written; discarding" in caplog.text
    assert _same_frames(_marg_result(again), clean["changed"])


def _sft(data_dir, model_cfg, cfg, root: Path) -> dict:
    return {
        "data_dir": str(data_dir),
        "model_cfg": model_cfg,
        "prompt_cfg": SFT_PROMPT,
        "cfg": cfg,
        "adapter_dir": str(root / "adapter"),
        "checkpoint_dir": str(root / "ckpt"),
        "log_csv": str(root / "log.csv"),
        "threads": 1,
    }


def _sft_result(root: Path) -> dict:
    from safetensors.torch import load_file

    return {
        "tensors": load_file(str(root / "adapter" / "adapter_model.safetensors")),
        "info": json.loads((root / "adapter" / "sft_info.json").read_text()),
        "log": pd.read_csv(root / "log.csv"),
    }


def _same_adapter(a: dict, b: dict) -> bool:
    return (
        a["info"] == b["info"]
        and a["log"].equals(b["log"])
        and a["tensors"].keys() == b["tensors"].keys()
        and all(torch.equal(a["tensors"][k], b["tensors"][k]) for k in a["tensors"])
    )


def _complete(ckpt: Path) -> list[str]:
    return sorted(p.parent.name for p in ckpt.glob(f"checkpoint-*/{FINGERPRINT_FILE}"))


def test_kill9_during_sft_then_changed_learning_rate(tiny_cfg, tmp_path, caplog, lean_cpu):  # noqa: F811
    data_dir = tmp_path / "data"
    save_canonical(_sft_dataset(SFT_TRAIN_IDS), data_dir)
    new_lr = {**SFT_CFG, "lr": 3e-2}
    # The trainer records checkpoints by absolute path: every rerun happens in the killed
    # run's folder, restored from a snapshot (as in the in-process SFT matrix).
    work, snapshot = tmp_path / "work", tmp_path / "snapshot"
    with _running(tmp_path, "sft", _sft(data_dir, tiny_cfg, SFT_CFG, work)) as child:
        clean = {}  # the clean runs go while the child starts
        for name, cfg in (("plain", SFT_CFG), ("new_lr", new_lr)):
            train_sft_from_files(**_sft(data_dir, tiny_cfg, cfg, tmp_path / name))
            clean[name] = _sft_result(tmp_path / name)
        assert not _same_adapter(clean["plain"], clean["new_lr"])
        _kill_when(child, lambda: bool(_complete(work / "ckpt")), tmp_path / "sft.log")
    # killed right after the first checkpoint (the epoch-1 evaluation, step 2): no adapter
    assert _complete(work / "ckpt") == ["checkpoint-2"]
    assert not (work / "adapter").exists() and not (work / "log.csv").exists()
    shutil.copytree(work, snapshot)

    with caplog.at_level(logging.INFO):
        train_sft_from_files(**_sft(data_dir, tiny_cfg, SFT_CFG, work))
    assert f"SFT: resuming from {work / 'ckpt' / 'checkpoint-2'}" in caplog.text
    assert _same_adapter(_sft_result(work), clean["plain"])

    shutil.rmtree(work)
    shutil.copytree(snapshot, work)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train_sft_from_files(**_sft(data_dir, tiny_cfg, new_lr, work))
    assert "SFT: 1 checkpoint(s)" in caplog.text
    assert "were written for another training: discarded, training from scratch" in caplog.text
    assert "resuming" not in caplog.text
    assert _same_adapter(_sft_result(work), clean["new_lr"])
    digest = clean["new_lr"]["info"]["fingerprint"]
    for path in (work / "ckpt").glob(f"checkpoint-*/{FINGERPRINT_FILE}"):
        assert json.loads(path.read_text())["digest"] == digest, path  # nothing old left
