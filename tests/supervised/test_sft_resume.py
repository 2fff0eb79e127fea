"""SFT checkpoints resume only the run that wrote them (issue: fingerprinted resumable state).

A checkpoint carries a digest of the training config, the base model and the encoded
train/dev examples: a changed ``lr`` retrains from scratch, an unchanged rerun reuses the
finished run byte for byte, and a run killed mid-training resumes to exactly the adapter of an
uninterrupted run (CPU, fixed seeds, dropout on: equal tensors, not just close ones).
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer
from multilabel_llm.supervised.sft import (
    SimulatedInterrupt,
    base_model_identity,
    build_examples,
    prepare_checkpoints,
    sft_fingerprint,
    train_sft,
    zero_shot_builder,
)
from multilabel_llm.supervised.sft_checkpoints import FINGERPRINT_FILE, latest_checkpoint
from tests.builders import TOY_PROMPT_CFG, tiny_random_llama, toy_dataset

CFG = {
    "seed": 0,
    "lora": {"r": 4, "alpha": 32, "dropout": 0.1, "target_modules": None},
    "lr": 1e-2,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "batch_size": 4,
    "grad_accum": 1,
    "max_grad_norm": 1.0,
    "epochs": 2,
    "max_seq_length": 96,
    "append_eos": True,
    "max_train_examples": 12,
    "max_dev_examples": 2,
    "eval_every": 3,  # = epoch ends: evaluations (and checkpoints) at steps 3 and 6
    "checkpoint_every": 2,  # checkpoints also at 2 and 4
    "keep_checkpoints": 3,
    "patience": 5,
}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(bundled_model_cfg())


def _fresh(tokenizer, seed: int = 0):
    return tiny_random_llama(tokenizer, seed=seed, hidden=16)[0]


def _train(tokenizer, root, cfg=CFG, **kw):
    return train_sft(
        _fresh(tokenizer, kw.pop("model_seed", 0)), tokenizer, toy_dataset(), TOY_PROMPT_CFG,
        cfg, root / "adapter", root / "ckpt", root / "log.csv", progress=False, **kw,
    )  # fmt: skip


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def _adapter_bytes(path) -> dict:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def uninterrupted(tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    log = _train(tokenizer, root)
    return root, log


def test_changed_lr_retrains_and_unchanged_rerun_reuses(tokenizer, uninterrupted, tmp_path, caplog):
    full, log = uninterrupted
    root = tmp_path / "run"
    shutil.copytree(full, root)
    first = _adapter_bytes(root / "adapter")

    # unchanged config: the finished run is reused, the adapter is byte-identical
    shutil.rmtree(root / "adapter")  # Snakemake deletes outputs before rerunning a job
    again = _train(tokenizer, root)
    assert again.equals(log)
    assert _adapter_bytes(root / "adapter") == first

    # training.sft.lr changed: the old checkpoints are discarded and training restarts
    caplog.set_level(logging.WARNING, logger="multilabel_llm.supervised.sft")
    changed = _train(tokenizer, root, {**CFG, "lr": 3e-2})
    assert "written for another training" in caplog.text
    assert changed["train_loss"].iloc[0] == pytest.approx(log["train_loss"].iloc[0])  # step 1
    assert changed["train_loss"].iloc[1:].tolist() != log["train_loss"].iloc[1:].tolist()
    old, new = _tensors(full / "adapter"), _tensors(root / "adapter")
    assert any(not torch.equal(old[k], new[k]) for k in old)
    info = json.loads((root / "adapter" / "sft_info.json").read_text())
    old_info = json.loads((full / "adapter" / "sft_info.json").read_text())
    assert info["fingerprint"] != old_info["fingerprint"]
    digests = {
        json.loads((p / FINGERPRINT_FILE).read_text())["digest"]
        for p in (root / "ckpt").glob("checkpoint-*")
    }
    assert digests == {info["fingerprint"]}  # no checkpoint of the old lr is left


def test_killed_run_resumes_to_the_uninterrupted_result(tokenizer, uninterrupted, tmp_path):
    full, log = uninterrupted
    cut = tmp_path / "cut"
    # killed before step 6, after the checkpoint of step 4 (mid-epoch: 1 of 3 batches done)
    with pytest.raises(SimulatedInterrupt):
        _train(tokenizer, cut, stop_after=5)
    assert latest_checkpoint(cut / "ckpt").name == "checkpoint-4"
    assert not (cut / "adapter").exists()
    resumed = _train(tokenizer, cut)
    # exact on CPU: same batches, same dropout masks (RNG states restored), same arithmetic
    assert resumed["train_loss"].tolist() == log["train_loss"].tolist()
    assert resumed["dev_loss"].dropna().tolist() == log["dev_loss"].dropna().tolist()
    a, b = _tensors(full / "adapter"), _tensors(cut / "adapter")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_half_written_and_stale_checkpoints_are_removed(tmp_path):
    ckpt = tmp_path / "ckpt"
    for step, digest in ((2, "aaa"), (4, "bbb"), (6, None)):
        path = ckpt / f"checkpoint-{step}"
        path.mkdir(parents=True)
        (path / "trainer_state.json").write_text("{}")
        if digest:  # checkpoint-6 was cut off before its fingerprint was written
            (path / FINGERPRINT_FILE).write_text(json.dumps({"digest": digest, "parts": {}}))
    (ckpt / "step-0000004").mkdir()  # the earlier hand-written loop's format
    latest = prepare_checkpoints(ckpt, "aaa", {})
    assert latest == ckpt / "checkpoint-2"
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint-2"]
    assert prepare_checkpoints(ckpt, "ccc", {}) is None and not any(ckpt.iterdir())


def test_fingerprint_covers_model_data_prompt_and_training_config(tokenizer):
    ds = toy_dataset()

    def digest(cfg=CFG, model_seed=0, prompt=TOY_PROMPT_CFG, exclude=(), model_cfg=None):
        builder = zero_shot_builder(prompt, ds)
        ex = lambda split, cap, excl: build_examples(  # noqa: E731
            ds, split, builder, tokenizer, cfg["max_seq_length"], True, cap, 0, excl
        )
        base = base_model_identity(_fresh(tokenizer, model_seed), model_cfg)
        train, dev = ex("train", cfg["max_train_examples"], ()), ex("dev", 4, exclude)
        return sft_fingerprint(cfg, base, train, dev)[0]

    ref = digest()
    assert digest() == ref  # deterministic
    # where and how often checkpoints are saved does not change what is trained
    assert digest({**CFG, "keep_checkpoints": 1, "checkpoint_every": 5}) == ref
    assert digest({**CFG, "resources": {"mem_mb": 1}}) == ref
    changed = {
        "lr": digest({**CFG, "lr": 2e-2}),
        "lora": digest({**CFG, "lora": {**CFG["lora"], "r": 8}}),
        "max_seq_length": digest({**CFG, "max_seq_length": 80}),
        "base weights": digest(model_seed=1),
        "base checkpoint": digest(model_cfg=bundled_model_cfg()),
        "prompt": digest(prompt={**TOY_PROMPT_CFG, "label_format": "comma"}),
        "dev ids": digest(exclude=["q0"]),
    }
    assert ref not in changed.values() and len(set(changed.values())) == len(changed), changed
