"""Fault-injection matrix for the resumable stages (issue 15): kill, change an input, rerun.

For trace extraction and token-level marginalisation, every (fault, change) pair is tried:
the job is killed at a seeded set of points (after a shard is written, after the last shard
but before the merge, or while a shard is being written), one input that decides the
result is changed (model, adapter, dtype, prompt, ids, shard size) or none is, and the job is
rerun. The rerun must equal a clean run of the new inputs (never short, never stale), reuse
the finished shards when nothing changed and recompute every shard when something did.

For SFT the same is done with training checkpoints: the run is killed after an early step
(nothing saved yet), mid-epoch right after a checkpoint, while a checkpoint is being saved
(before its fingerprint), after the last step before the adapter is written, or not at all
(a finished run); then the base model, the training config, the train or dev ids or the
prompt is changed, or nothing is. The rerun's adapter must hold exactly the tensors of a clean
run of the new inputs (``torch.equal``: CPU training with restored RNG states is exact),
resume from the latest complete checkpoint when nothing changed and train from scratch, with
every old checkpoint gone, when something did.
Tiny random models keep the whole matrix to seconds per stage.
"""

import copy
import gc
import gzip
import json
import random
import shutil

import pandas as pd
import pytest
import torch

import multilabel_llm.engine.run as run_mod
import multilabel_llm.supervised.sft as sft
from multilabel_llm.data.canonical import CanonicalDataset
from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer
from multilabel_llm.engine.run import extract_traces, marginalize
from tests.builders import TOY_PROMPT_CFG, tiny_random_llama, toy_dataset
from tests.builders import tiny_model as tiny

# short prompts (no demonstrations) keep each run to a fraction of a second
CFG = {**TOY_PROMPT_CFG, "max_new_tokens": 4, "n_shots": 0}
MARG_CFG = CFG
SEARCH = {"max_paths": 2, "max_new_tokens": 4, "max_expansions": 5, "top_k": 3}
CHANGES = ["none", "model", "adapter", "dtype", "prompt", "ids", "shard_size"]


class Killed(Exception):
    pass


def _fault_points(n_shards: int, seed: int) -> list[tuple[str, int]]:
    """Seeded kill points: after an early shard, after the last (before the merge), mid-write."""
    rng = random.Random(seed)
    return [
        ("after", rng.randrange(n_shards - 1)),
        ("after", n_shards - 1),
        ("during_write", rng.randrange(n_shards)),
    ]


@pytest.fixture(scope="module")
def variants():
    """Each change as the inputs of a run; the model objects are built once."""
    base, tok = tiny()
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    lora = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    ).merge_and_unload()
    ds = toy_dataset(n_queries=7)
    ids = ds.split("dev")["id"].tolist()
    plain = {"model": base, "ids": ids[:6], "shard_size": 2}
    changed = {
        "none": {},
        "model": {"model": tiny_random_llama(tok, seed=1)[0]},  # same model name
        "adapter": {"model": lora},
        "dtype": {"model": copy.deepcopy(base).to(torch.bfloat16)},
        "prompt": {"instruction": "Name the emotions in the input: {labels}.\n"},
        "ids": {"ids": ids[:5] + ids[6:7]},
        "shard_size": {"shard_size": 3},
    }
    return ds, tok, plain, {c: {**plain, **changed[c]} for c in CHANGES}


def _prompt(cfg, inputs):
    if "instruction" not in inputs:
        return cfg
    template = {**cfg["templates"]["default"], "instruction": inputs["instruction"]}
    return {**cfg, "templates": {"default": template}}


def _traces(ds, tok, inputs, out, on_shard=None):
    return extract_traces(
        ds,
        inputs["ids"],
        inputs["model"],
        tok,
        _prompt(CFG, inputs),
        out / "traces.jsonl.gz",
        model_name="tiny",
        shard_size=inputs["shard_size"],
        batch_size=2,
        on_shard=on_shard,
    )


def _trace_result(out):
    with gzip.open(out / "traces.jsonl.gz", "rt") as f:
        lines = [json.loads(line) for line in f]
    meta = json.loads((out / "traces.meta.json").read_text())  # the sidecar counts too
    return [t["id"] for t in lines], [*lines, meta]


def _marg(ds, tok, inputs, out, on_shard=None):
    return marginalize(
        ds,
        inputs["ids"],
        inputs["model"],
        tok,
        _prompt(MARG_CFG, inputs),
        SEARCH,
        out / "m.parquet",
        out / "m.paths.parquet",
        model_name="tiny",
        shard_size=inputs["shard_size"],
        on_shard=on_shard,
    )


def _marg_result(out):
    dist = pd.read_parquet(out / "m.parquet")
    stats = pd.read_parquet(out / "m.paths.parquet").drop(columns="seconds")
    return dist["id"].tolist(), (dist, stats)


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(x.equals(y) for x, y in zip(a, b, strict=True))
    return a == b


STAGES = {
    # stage -> (runner, result reader, what the mid-write fault interrupts)
    "traces": (_traces, _trace_result, "write_traces"),
    "marginalize": (_marg, _marg_result, "write_parquet"),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_fault_matrix(stage, variants, tmp_path, monkeypatch, capsys):
    runner, result, writer = STAGES[stage]
    ds, tok, plain, inputs = variants
    n_shards = -(-len(plain["ids"]) // plain["shard_size"])
    faults = _fault_points(n_shards, seed=15)
    clean = {}
    for change in CHANGES:
        runner(ds, tok, inputs[change], tmp_path / "clean" / change)
        clean[change] = result(tmp_path / "clean" / change)
    real_writer = getattr(run_mod, writer)
    tried, problems = 0, []
    for fault, at in faults:
        for change in CHANGES:
            out = tmp_path / f"{fault}{at}-{change}"
            shard_writes = []

            def on_shard(k, fault=fault, at=at):
                if fault == "after" and k == at:
                    raise Killed

            def flaky_writer(path, *args, fault=fault, at=at, real=real_writer, log=shard_writes):
                if "shard-" in str(path) and not str(path).endswith(".npz"):
                    log.append(path)
                    if fault == "during_write" and len(log) == at + 1:
                        # die half-way through the write: the atomic writer must leave nothing
                        def die(tmp):
                            tmp.write_bytes(b"half")
                            raise Killed

                        return run_mod.write_with(path, die)
                return real(path, *args)

            monkeypatch.setattr(run_mod, writer, flaky_writer)
            with pytest.raises(Killed):
                runner(ds, tok, plain, out, on_shard)
            monkeypatch.setattr(run_mod, writer, real_writer)
            finished = sorted(p.name for p in out.glob("**/shard-*") if "npz" not in p.name)
            summary = runner(ds, tok, inputs[change], out)
            ids, got = result(out)
            want_ids, want = clean[change]
            n_new = -(-len(inputs[change]["ids"]) // inputs[change]["shard_size"])
            expect_computed = (
                [k for k in range(n_new) if f"shard-{k:05d}" not in " ".join(finished)]
                if change == "none"
                else list(range(n_new))
            )
            tried += 1
            case = f"{stage}: kill {fault} shard {at}, change {change}"
            if ids != inputs[change]["ids"]:
                problems.append(f"{case}: ids {ids} (short or stale)")
            elif not _same(got, want):
                problems.append(f"{case}: differs from a clean run")
            elif summary["computed_shards"] != expect_computed:
                problems.append(
                    f"{case}: computed {summary['computed_shards']}, expected {expect_computed}"
                )
    with capsys.disabled():
        print(
            f"\n{stage} fault matrix: {tried} (fault, change) cases, {tried - len(problems)} held"
        )
    assert tried == len(faults) * len(CHANGES) == 21
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------ SFT column

# 4 train examples in batches of 2 for 2 epochs: 4 optimizer steps. Dev is evaluated (and
# checkpointed) at each epoch end (steps 2 and 4) and a checkpoint is also saved at step 3,
# mid-epoch; with keep_checkpoints 2 the trainer's rotation deletes one of them at step 4.
SFT_CFG = {
    "seed": 0,
    "lora": {"r": 4, "alpha": 32, "dropout": 0.1, "target_modules": None},
    "lr": 1e-2,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "batch_size": 2,
    "grad_accum": 1,
    "max_grad_norm": 1.0,
    "epochs": 2,
    "max_seq_length": 64,  # the longest prompt + answer here is 55 tokens: nothing truncated
    "append_eos": True,
    "max_train_examples": None,
    "max_dev_examples": None,
    "eval_every": 0,
    "checkpoint_every": 3,
    "keep_checkpoints": 2,
    "patience": 5,
}
SFT_STEPS = 4
SFT_SAVES = (2, 3, 4)
SFT_TRAIN_IDS = [f"tr{i}" for i in range(4)]
SFT_CHANGES = ["none", "model", "lr", "train_ids", "dev_ids", "prompt"]


def _sft_fault_points(seed: int) -> list[tuple[str, int]]:
    """Kill points the trainer allows: ``stop_after`` k stops before step k + 1 begins; the
    mid-save fault dies after checkpoint k's files, before its fingerprint (seeded k)."""
    rng = random.Random(seed)
    return [
        ("stop_after", 1),  # an early step, nothing saved yet: resumes from scratch
        ("stop_after", 3),  # mid-epoch 2, right after checkpoint-3
        # cut off while saving a later checkpoint: resumes from the complete one before
        ("mid_save", rng.choice(SFT_SAVES[1:])),
        ("before_adapter", SFT_STEPS),  # every step and checkpoint done, no adapter yet
        ("after_adapter", SFT_STEPS),  # not killed: a finished run whose inputs then change
    ]


def _sft_dataset(train_ids: list[str]) -> CanonicalDataset:
    """The toy dataset's 3 first dev queries and exactly ``train_ids`` as the train split."""
    ds = toy_dataset(n_queries=3)
    frame = ds.examples
    keep = (frame["split"] == "dev") | frame["id"].isin(train_ids)
    return CanonicalDataset(ds.name, ds.labels, ds.multilabel, frame[keep].reset_index(drop=True))


@pytest.fixture(scope="module")
def sft_variants():
    """Each change as the inputs of a training run (the model is built fresh per run: LoRA
    is injected into it in place)."""
    tok = load_tokenizer(bundled_model_cfg())

    def prompt(instruction):
        template = {**TOY_PROMPT_CFG["templates"]["default"], "instruction": instruction}
        return {**TOY_PROMPT_CFG, "templates": {"default": template}}

    plain = {
        "model_seed": 0,
        "cfg": SFT_CFG,
        "dataset": _sft_dataset(SFT_TRAIN_IDS),
        "prompt": prompt("Emotions ({labels}):\n"),  # short: training time grows with tokens
        "exclude": None,
    }
    changed = {
        "none": {},
        "model": {"model_seed": 1},  # other base weights, same architecture and name
        "lr": {"cfg": {**SFT_CFG, "lr": 3e-2}},
        "train_ids": {"dataset": _sft_dataset(SFT_TRAIN_IDS[:3] + ["tr4"])},
        "dev_ids": {"exclude": {"main_test_set": ["q0"]}},  # early stopping reads other ids
        "prompt": {"prompt": prompt("Name the emotions in the input: {labels}.\n")},
    }
    return tok, {c: {**plain, **changed[c]} for c in SFT_CHANGES}


def _train(tok, inputs, root, stop_after=None):
    return sft.train_sft(
        tiny_random_llama(tok, seed=inputs["model_seed"], hidden=16)[0],
        tok,
        inputs["dataset"],
        inputs["prompt"],
        inputs["cfg"],
        root / "adapter",
        root / "ckpt",
        progress=False,
        stop_after=stop_after,
        exclude=inputs["exclude"],
    )


def _sft_result(root, log):
    from safetensors.torch import load_file

    adapter = root / "adapter"
    return {
        "log": log,
        "tensors": load_file(str(adapter / "adapter_model.safetensors")),
        "info": json.loads((adapter / "sft_info.json").read_text()),
        "digest": json.loads((adapter / sft.FINGERPRINT_FILE).read_text())["digest"],
    }


def _same_training(a, b) -> bool:
    return (
        a["log"].equals(b["log"])
        and a["tensors"].keys() == b["tensors"].keys()
        and all(torch.equal(a["tensors"][k], b["tensors"][k]) for k in a["tensors"])
    )


def _complete_steps(ckpt) -> list[int]:
    """Checkpoints a rerun may resume: those whose fingerprint (written last) is there."""
    return sorted(
        int(p.name.removeprefix("checkpoint-"))
        for p in ckpt.glob("checkpoint-*")
        if (p / sft.FINGERPRINT_FILE).is_file()
    )


def _fault_hooks(m, fault, at):
    """Install the fault on ``m`` (a monkeypatch context); ``stop_after`` is train_sft's own."""
    if fault == "mid_save":
        real = sft._trainer_callbacks

        def callbacks(*args, **kwargs):
            found = real(*args, **kwargs)
            for cb in found:
                if type(cb).__name__ == "FingerprintCallback":
                    save = cb.on_save

                    def on_save(a, state, control, save=save, **kw):
                        if state.global_step == at:
                            raise Killed  # the trainer wrote the files, not the fingerprint
                        return save(a, state, control, **kw)

                    cb.on_save = on_save
            return found

        m.setattr(sft, "_trainer_callbacks", callbacks)
    elif fault == "before_adapter":

        def finalize(*args, **kwargs):
            raise Killed

        m.setattr(sft, "_finalize", finalize)


@pytest.fixture
def lean_cpu():
    """accelerate ends every training run with ``gc.collect()``: freezing what exists before
    keeps its ~40 collections from walking the whole test session's heap (seconds each late
    in the suite). One torch thread: these matrices are too small to gain from more."""
    threads = torch.get_num_threads()
    gc.collect()
    gc.freeze()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    gc.unfreeze()


def test_sft_fault_matrix(sft_variants, tmp_path, monkeypatch, capsys, lean_cpu):
    tok, inputs = sft_variants
    # Every run happens in the same folder (restored from a snapshot per case): the trainer
    # records checkpoints by absolute path, so a moved copy would be another situation.
    work = tmp_path / "work"

    def restore(snapshot=None):
        shutil.rmtree(work, ignore_errors=True)
        if snapshot is not None:
            shutil.copytree(snapshot, work)

    clean = {}
    for change in SFT_CHANGES:
        restore()
        clean[change] = _sft_result(work, _train(tok, inputs[change], work))
        shutil.copytree(work, tmp_path / "clean" / change)
    for change in SFT_CHANGES[1:]:
        # each change must alter the training, or a stale adapter would pass unnoticed
        assert not _same_training(clean[change], clean["none"]), change
    assert clean["none"]["info"]["steps"] == SFT_STEPS

    resumed = []
    real_prepare = sft.prepare_checkpoints

    def prepare(*args, **kwargs):
        latest = real_prepare(*args, **kwargs)
        resumed.append(None if latest is None else int(latest.name.removeprefix("checkpoint-")))
        return latest

    monkeypatch.setattr(sft, "prepare_checkpoints", prepare)
    faults = _sft_fault_points(seed=15)
    tried, problems = 0, []
    for fault, at in faults:
        # the killed run is the same for every change: run it once, rerun from a copy
        snapshot = tmp_path / "faults" / f"{fault}{at}"
        if fault == "after_adapter":
            restore(tmp_path / "clean" / "none")
        else:
            restore()
            with monkeypatch.context() as m, pytest.raises((Killed, sft.SimulatedInterrupt)):
                _fault_hooks(m, fault, at)
                _train(tok, inputs["none"], work, stop_after=at if fault == "stop_after" else None)
        shutil.copytree(work, snapshot)
        saved = _complete_steps(work / "ckpt")
        # the fault left what it claims to: checkpoints up to the kill point, no adapter
        if fault == "stop_after":
            assert saved[-1:] == [s for s in SFT_SAVES if s <= at][-1:], (fault, at, saved)
        elif fault == "mid_save":
            assert (work / "ckpt" / f"checkpoint-{at}").is_dir() and at not in saved, saved
        else:
            assert saved[-1] == SFT_STEPS, (fault, saved)
        assert (work / "adapter").is_dir() == (fault == "after_adapter")
        for change in SFT_CHANGES:
            restore(snapshot)
            resumed.clear()
            got = _sft_result(work, _train(tok, inputs[change], work))
            want = clean[change]
            expect_resume = (saved[-1] if saved else None) if change == "none" else None
            left = {
                json.loads((p / sft.FINGERPRINT_FILE).read_text())["digest"]
                for p in (work / "ckpt").glob("checkpoint-*")
            }
            tried += 1
            case = f"sft: kill {fault} step {at}, change {change}"
            if got["info"]["steps"] != SFT_STEPS:
                problems.append(f"{case}: {got['info']['steps']} steps (short)")
            elif got["digest"] != want["digest"] or left != {want["digest"]}:
                problems.append(f"{case}: stale fingerprint in the adapter or a checkpoint")
            elif not _same_training(got, want) or got["info"] != want["info"]:
                problems.append(f"{case}: adapter or training log differs from a clean run")
            elif resumed != [expect_resume]:
                problems.append(f"{case}: resumed from {resumed}, expected [{expect_resume}]")
    with capsys.disabled():
        print(f"\nsft fault matrix: {tried} (fault, change) cases, {tried - len(problems)} held")
    assert tried == len(faults) * len(SFT_CHANGES) == 30, tried
    assert not problems, "\n".join(problems)
